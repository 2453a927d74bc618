"""Decoding: rules, the batched decoding loop, and its `Trajectory` record."""

from .config import POSITION_SCORES, RULES, DecodeConfig
from .decode import decode, redecode, replay
from .trajectory import Trajectory

__all__ = ["DecodeConfig", "POSITION_SCORES", "RULES", "Trajectory", "decode", "redecode", "replay"]
