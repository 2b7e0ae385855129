"""The model's feature vector: the sender's side, then the counterparty's side.

A row leaves the account step with the :data:`~pipeline.domain.sender_features.SENDER_FEATURES`
and the counterparty step appends the
:data:`~pipeline.domain.counterparty.COUNTERPARTY_FEATURES`; a model artifact names the
features it was trained on, and the job refuses one whose list differs from :data:`FEATURES`.

:data:`RISK_DIRECTION` says, from what each feature means, which way it points to fraud:
+1 when more of it is riskier (more transactions in the hour, a larger multiple of the
habit), -1 when less is (a younger account, fewer payments to this payee before). The model
is constrained to be monotone in those directions (an unseen pattern that is more extreme
than a learned one is never scored lower), and its anomaly measures look only that way.

>>> FEATURES[:2], len(FEATURES) == len(SENDER_FEATURES) + len(COUNTERPARTY_FEATURES)
(('amount_eur_log', 'is_transfer'), True)
>>> set(RISK_DIRECTION) <= set(FEATURES)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pipeline.domain.counterparty import COUNTERPARTY_FEATURES
from pipeline.domain.sender_features import SENDER_FEATURES

__all__ = ["COUNTERPARTY_FEATURES", "FEATURES", "RISK_DIRECTION", "SENDER_FEATURES"]

FEATURES: tuple[str, ...] = SENDER_FEATURES + COUNTERPARTY_FEATURES

_MORE = (
    "amount_eur_log", "near_threshold", "rule_score", "balance_share",
    "amount_vs_kind_habit", "amount_kind_z", "amount_vs_habit",
    "count_10m", "count_1h", "count_24h", "count_24h_vs_usual", "count_24h_surprise",
    "failed_1h", "small_1h", "withdrawals_24h", "same_amount_24h",
    "same_amount_24h_above_habit", "high_12h", "high_new_payees_24h", "spend_24h_vs_daily",
    "amount_vs_pair", "new_payee_vs_habit", "pair_count_24h", "new_pair_count_24h",
    "payees_24h", "new_payees_24h", "new_payees_7d",
    "cp_inflows_1h", "cp_inflows_6h", "cp_inflows_24h", "cp_inflows_24h_vs_usual",
    "cp_senders_6h", "cp_senders_24h", "cp_senders_6h_surprise", "cp_senders_24h_surprise",
    "cp_new_senders_6h", "cp_new_senders_24h", "cp_amount_z", "cp_eur_24h_log",
    "cp_eur_24h_vs_usual",
)
_LESS = (
    "account_age_days", "hour_share", "hour_share_before_today", "pair_count", "pair_age_days", "pair_gap_hours",
    "cp_sender_inflows",
)
RISK_DIRECTION: Mapping[str, int] = MappingProxyType(
    {**dict.fromkeys(_MORE, 1), **dict.fromkeys(_LESS, -1)}
)
