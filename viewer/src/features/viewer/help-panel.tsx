import { useEffect, useRef } from 'react';
import { type MessageKey, useT } from '../../i18n';

const LINES: MessageKey[] = [
  'help.scroll',
  'help.pageScroll',
  'help.homeEnd',
  'help.wheel',
  'help.leftDrag',
  'help.rightDrag',
  'help.middleDrag',
  'help.touch',
  'help.tools',
  'help.presets',
  'help.view',
  'help.cine',
  'help.layout',
  'help.viewport',
  'help.delete',
  'help.help',
];
const KEYS: Partial<Record<MessageKey, string>> = {
  'help.scroll': '↑ ↓ ← →',
  'help.pageScroll': 'PgUp PgDn',
  'help.homeEnd': 'Home End',
};

export function HelpPanel({ onClose }: { onClose(): void }) {
  const t = useT();
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal?.();
  }, []);
  return (
    <dialog
      ref={ref}
      className="help-panel"
      onClose={onClose}
      aria-label={t('help.title')}
      data-testid="help-panel"
    >
      <h2>{t('help.title')}</h2>
      <ul>
        {LINES.map((k) => (
          <li key={k}>
            {KEYS[k] && <kbd translate="no">{KEYS[k]}</kbd>} {t(k)}
          </li>
        ))}
      </ul>
      <button type="button" onClick={onClose}>
        {t('app.close')}
      </button>
    </dialog>
  );
}
