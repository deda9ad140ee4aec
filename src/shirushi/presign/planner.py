"""When responses are signed, valid and due again. Pure: time and randomness are arguments.

BR 4.9.10 (validity >= 16 h): a response is refreshed at least 8 h before its nextUpdate and at
most 4 days after its thisUpdate; policy 4.9.9: every 24 h whether or not anything changed.
Mozilla policy: nextUpdate never after the notAfter of the signer certificate in `certs`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from shirushi.errors import StateError

# Refresh times are spread over the last tenth of the interval so that certificates issued in a
# burst are not all re-signed in the same minute a day later.
JITTER_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class Window:
    this_update: dt.datetime
    next_update: dt.datetime
    due: dt.datetime  # when the presigner re-signs it; also bounds HTTP max-age


def window(
    now: dt.datetime,
    *,
    validity: dt.timedelta,
    interval: dt.timedelta,
    signer_not_after: dt.datetime,
    rng: random.Random | None = None,
) -> Window:
    next_update = now + validity
    if next_update > signer_not_after:
        raise StateError(
            "the OCSP signer certificate expires before the responses it would sign "
            f"(notAfter {signer_not_after:%Y-%m-%d %H:%M:%SZ}); renew it with `shirushi init`"
        )
    jitter = (rng or random).uniform(0, interval.total_seconds() * JITTER_FRACTION)
    due = now + interval - dt.timedelta(seconds=int(jitter))
    # Never later than 8 h before nextUpdate (BR 4.9.10), whatever the settings.
    due = min(due, next_update - dt.timedelta(hours=8))
    return Window(now, next_update, due)
