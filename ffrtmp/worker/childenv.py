"""The environment FFmpeg, GStreamer and their probes run with: what they need, never the worker's secrets.

A job's process reads what its input names, so it must hold nothing worth reading: the worker's
`FFRTMP_*` settings (its API key), cloud credentials, tokens. Only names on an allow-list pass — the
locale, where programs and libraries are, and what GStreamer and hardware encoders read — and even those
are dropped when their name says they hold a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

KEPT_NAMES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "LD_LIBRARY_PATH",
                        "XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_DATA_DIRS", "XDG_CONFIG_DIRS",
                        "DISPLAY", "WAYLAND_DISPLAY", "FONTCONFIG_FILE", "FONTCONFIG_PATH",
                        "OCL_ICD_VENDORS", "VDPAU_DRIVER"})
KEPT_PREFIXES = ("LC_", "GST_", "LIBVA_", "CUDA_", "NVIDIA_", "ORC_")
"""Locale, GStreamer (plugin paths, registry, debug), VA-API and NVIDIA settings."""
SECRET = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowed part of `environ` (default: this process's environment)."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items()
            if (name in KEPT_NAMES or name.startswith(KEPT_PREFIXES))
            and not name.startswith("FFRTMP_") and not SECRET.search(name)}
