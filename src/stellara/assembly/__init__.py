"""Building the running gateway from a config, and starting and stopping it as a stack."""

from stellara.assembly.config import check_config, load_config, parse_config
from stellara.assembly.lifecycle import Lifecycle
from stellara.assembly.runtime import Runtime, build_runtime

__all__ = ["Lifecycle", "Runtime", "build_runtime", "check_config", "load_config", "parse_config"]
