import type { InputHTMLAttributes } from 'react';

/**
 * A labelled input of a form: the label's text above the input, an optional hint below it. The input
 * takes every attribute of an <input>.
 */
export function Field({
  label,
  hint,
  ...input
}: InputHTMLAttributes<HTMLInputElement> & { label: string; hint?: string }) {
  return (
    <label>
      <span>{label}</span>
      <input {...input} />
      {hint && <small className="muted">{hint}</small>}
    </label>
  );
}
