import type { ReactNode } from 'react';

/**
 * A list of records (users, API tokens, share links, audit events): a table that scrolls sideways on a
 * narrow screen, with one header row (an empty string for a column without a title) and the rows given.
 */
export function DataTable({
  headers,
  className,
  children,
}: {
  headers: string[];
  className?: string;
  children: ReactNode;
}) {
  return (
    <div className="table-scroll">
      <table className={className ? `data-table ${className}` : 'data-table'}>
        <thead>
          <tr>
            {headers.map((h) => (
              <th key={h || 'untitled'}>{h}</th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
