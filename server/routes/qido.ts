/** QIDO-RS (PS3.18 10.6): search for studies, series and instances. */
import type { Request, Response } from 'express';
import { negotiateSearch } from '../../dicomweb/media-types';
import { parseQuery, type QueryLevel, restrictToStudies } from '../../dicomweb/qido';
import type { Index } from '../../storage/index';
import { acceptedTypes, publicRoot, queryParams } from './common';

type Json = Record<string, { vr: string; Value?: unknown[] }>;

const first = (ds: Json, tag: string) => ds[tag]?.Value?.[0] as string | undefined;

export function qido(level: QueryLevel, index: Index, maxResults: number) {
  return async (req: Request, res: Response) => {
    const type = negotiateSearch(acceptedTypes(req));
    const p = req.params as Record<string, string | undefined>;
    const query = parseQuery(
      level,
      queryParams(req),
      { StudyInstanceUID: p.study, SeriesInstanceUID: p.series },
      { maxLimit: maxResults },
    );
    // A referring physician or a share link: only the studies they may read (set by the route's guard).
    const readable = res.locals.readableStudies as string[] | undefined;
    if (readable && readable.length === 0) {
      res.status(200).type(`${type}; charset=utf-8`).send('[]');
      return;
    }
    const { matches, more } = await index.search(readable ? restrictToStudies(query, readable) : query);
    const root = publicRoot(req);
    for (const ds of matches as Json[]) {
      const study = first(ds, '0020000D') ?? p.study;
      const series = first(ds, '0020000E') ?? p.series;
      const sop = first(ds, '00080018');
      let url: string | undefined;
      if (level === 'study') url = `${root}/studies/${study}`;
      else if (level === 'series') url = `${root}/studies/${study}/series/${series}`;
      else if (study && series && sop) url = `${root}/studies/${study}/series/${series}/instances/${sop}`;
      if (url) ds['00081190'] = { vr: 'UR', Value: [url] };
    }
    if (more) res.setHeader('Warning', '299 pacs "There are additional results that can be requested"');
    for (const w of query.warnings) res.append('Warning', `299 pacs "${w.replace(/"/g, "'")}"`);
    res.status(200).type(`${type}; charset=utf-8`).send(JSON.stringify(matches));
  };
}
