/** What the command-line scripts (import, bench) share: reading options, reporting usage, being run as main. */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** One command-line argument, with readers for the value of the option it names. */
export interface Arg {
  /** The argument as given. */
  arg: string;
  /** The option: the argument, or for `--name=value` the part before '='. */
  flag: string;
  /** The option's value: what follows '=', else the next argument (which it consumes). */
  value(): string;
  /** value() as an integer of at least min (default 1: a positive integer). */
  int(min?: number): number;
}

/** The arguments one by one (`--name value` and `--name=value` alike); throws for a missing or bad value. */
export function* commandLine(argv: readonly string[]): Generator<Arg> {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    const int = (min = 1) => {
      const n = Number(value());
      if (!Number.isInteger(n) || n < min)
        throw new Error(
          `${flag} must be ${min === 1 ? 'a positive integer' : `an integer of at least ${min}`}`,
        );
      return n;
    };
    yield { arg, flag, value, int };
  }
}

/**
 * Parses this process's arguments with `parse` (which returns the options, or the help text for
 * -h/--help). Returns the options, or the exit code once it has printed the help (0) or the error
 * and the usage (2).
 */
export function parseOrExit<T extends object>(
  parse: (argv: string[]) => T | string,
  usage: string,
): T | number {
  let parsed: T | string;
  try {
    parsed = parse(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (typeof parsed === 'string') {
    console.log(parsed);
    return 0;
  }
  return parsed;
}

/** Whether the module at `moduleUrl` (its import.meta.url) is the script node was started with. */
export function isMain(moduleUrl: string): boolean {
  return Boolean(process.argv[1]) && moduleUrl === pathToFileURL(resolve(process.argv[1])).href;
}
