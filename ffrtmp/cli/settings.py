"""Settings read only from the environment (no option of their own), named in `--help` so they can be found."""

from __future__ import annotations

from ffrtmp import defaults
from ffrtmp.units import duration_text, size_text

ENVIRONMENT_ONLY: dict[str, str] = {
    "FFRTMP_MAX_MESSAGE_BYTES": "a peer that sends a bigger frame is disconnected "
                                f"(default {size_text(defaults.MAX_MESSAGE_BYTES)})",
    "FFRTMP_RESULT_RESEND": "a worker resends an unacknowledged RESULT this often "
                            f"(default {duration_text(defaults.RESULT_RESEND_INTERVAL)})",
    "FFRTMP_CONFIG_DIR": "the client's own CURVE key pair (default ~/.config/ffrtmp)",
    "FFRTMP_VAAPI_DEVICE": "the VAAPI device a worker tests encoders on (default /dev/dri/renderD128)",
    "FFRTMP_PREAUTH_RATE": "frames per second a peer that is not a joined worker may send before its frames are "
                           f"dropped unread (default {defaults.PREAUTH_RATE:g})",
}


def environment_epilog(*names: str) -> str:
    """`--help`'s closing paragraph for the environment-only settings `names`."""
    return "Environment only: " + "; ".join(f"{name}: {ENVIRONMENT_ONLY[name]}" for name in names) + "."
