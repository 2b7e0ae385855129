"""Every vocabulary the parsers accept, and what each word becomes in riskpipe's records.

Records keep riskpipe's own words (:mod:`pipeline.records`), in lower case. Input words
are matched without regard to ASCII case, in every input shape, riskpipe's own included
(``"Completed"`` is ``completed``). The two systems riskpipe replaces use other words for
some values; this module is the one place that maps them.

=====================  ===========================  ====================================
field                  input word (any case)        riskpipe's record
=====================  ===========================  ====================================
transaction_type       transfer, payment,           the same word
                       withdrawal, deposit
transaction_status     completed, pending, failed   the same word
evaluation             fraudulent, unidentified,    the same word
                       cleared
account_type           checking, savings,           the same word
                       business, credit,
                       investment
---------------------  ---------------------------  ------------------------------------
flinksql account_type  Personal                     checking
                       Corporate                    business
                       Savings                      savings
                       Investment                   investment (the one type riskpipe's
                                                    own bank does not issue)
flinksql               Deposit, Withdrawal,         deposit, withdrawal, transfer
transaction_type       Transfer
flinksql               Pending, Completed, Failed   pending, completed, failed
transaction_status
flinksql evaluation    (none in the shape)          unidentified: see
                                                    :mod:`pipeline.domain.flinksql`
---------------------  ---------------------------  ------------------------------------
poc status             completed, pending, failed   transaction_status, the same word
poc evaluation         fraudulent                   fraudulent
                       unidentified                 unidentified
                       any other string             cleared (the PoC's rule: anything
                       (e.g. legitimate)            else was cleared by the bank)
                       absent or null               unidentified (nobody decided)
poc transaction_type   (none: every message is      transfer
                       a transfer)
=====================  ===========================  ====================================

Why the Flink SQL types map this way: a personal account is riskpipe's checking account
and a corporate one its business account; savings is savings. An investment account has
no riskpipe equivalent, and folding it into savings would lose what its users query by,
so it stays ``investment``. Scoring treats every type but ``credit`` alike, so the mapping
changes no score.

Currencies are codes, not vocabulary words: ISO 4217 spells them in upper case, and
parsing matches them exactly (``pipeline.domain.currency``).

>>> TRANSACTION_TYPE["withdrawal"], FLINKSQL_ACCOUNT_TYPE["personal"]
('withdrawal', 'checking')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from pipeline.records import (
    EVALUATIONS,
    INVESTMENT,
    KNOWN_ACCOUNT_TYPES,
    TRANSACTION_STATUSES,
    TRANSACTION_TYPES,
)

__all__ = [
    "ACCOUNT_TYPE",
    "EVALUATION",
    "FLINKSQL_ACCOUNT_TYPE",
    "FLINKSQL_TRANSACTION_TYPE",
    "POC_EVALUATION",
    "POC_UNKNOWN_EVALUATION",
    "TRANSACTION_STATUS",
    "TRANSACTION_TYPE",
    "account_type_word",
]


def _same(words: Iterable[str]) -> Mapping[str, str]:
    return MappingProxyType({word: word for word in words})


# riskpipe's own shape: its words, in any case.
TRANSACTION_TYPE = _same(TRANSACTION_TYPES)
TRANSACTION_STATUS = _same(TRANSACTION_STATUSES)
EVALUATION = _same(EVALUATIONS)
ACCOUNT_TYPE = _same(KNOWN_ACCOUNT_TYPES)

# The Flink SQL risk job's producer.
FLINKSQL_ACCOUNT_TYPE: Mapping[str, str] = MappingProxyType(
    {
        "personal": "checking",
        "corporate": "business",
        "savings": "savings",
        "investment": INVESTMENT,
    }
)
FLINKSQL_TRANSACTION_TYPE: Mapping[str, str] = MappingProxyType(
    {"deposit": "deposit", "withdrawal": "withdrawal", "transfer": "transfer"}
)

# The Kafka Connect fraud PoC: two words mean something, any other string is cleared.
POC_EVALUATION: Mapping[str, str] = MappingProxyType(
    {"fraudulent": "fraudulent", "unidentified": "unidentified"}
)
POC_UNKNOWN_EVALUATION = "cleared"


def account_type_word(value: str | None) -> str | None:
    """riskpipe's word for an account type read from a store rather than a message.

    banking.accounts may hold the Flink SQL system's words (its producers wrote them); a
    word of neither vocabulary is kept as it is, since the table is the record, not input.

    >>> account_type_word("Personal"), account_type_word("CREDIT"), account_type_word("gold")
    ('checking', 'credit', 'gold')
    """
    if value is None or not value.isascii():
        return value
    word = value.lower()
    return ACCOUNT_TYPE.get(word) or FLINKSQL_ACCOUNT_TYPE.get(word) or value
