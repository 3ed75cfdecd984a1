/** The image transfer setting: automatic (by the link measured), as stored, or compressed lossless. */
import { useSyncExternalStore } from 'react';
import { useT } from '../../i18n';
import type { TransferMode } from '../../lib/transfer-policy';
import { getTransferState, setTransferMode, subscribeTransfer } from '../../lib/transfer-settings';

export function TransferSelect() {
  const t = useT();
  const state = useSyncExternalStore(subscribeTransfer, getTransferState);
  return (
    <label className="transfer" title={t('transfer.help')}>
      <span>{t('transfer.label')}</span>
      <select
        value={state.mode}
        data-testid="transfer-mode"
        data-link={state.link}
        onChange={(e) => setTransferMode(e.target.value as TransferMode)}
      >
        <option value="auto">
          {t(state.measured === 'slow' ? 'transfer.autoSlow' : 'transfer.autoFast')}
        </option>
        <option value="original">{t('transfer.original')}</option>
        <option value="lossless">{t('transfer.lossless')}</option>
      </select>
    </label>
  );
}
