/** The error of a form or a list, in words, announced by screen readers; nothing when there is none. */
export function FormError({ message, testId }: { message: string | undefined; testId?: string }) {
  if (!message) return null;
  return (
    <p className="form-error" role="alert" data-testid={testId}>
      {message}
    </p>
  );
}
