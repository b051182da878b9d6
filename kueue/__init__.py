"""Shared library of Kueue for Python: configuration, authentication, paths and
the generated gRPC stubs (kueue.v1)."""

__version__ = "0.1.0"

# The --config option of every program (kueue.config.resolve_config_path decides).
CONFIG_OPTION_HELP = (
    "config file (default: $KUEUE_CONFIG, or kueue/config.toml in $XDG_CONFIG_HOME or ~/.config)"
)
# The largest number a protobuf uint32 field carries: counts, slots, resource amounts.
UINT32_MAX = 2**32 - 1
