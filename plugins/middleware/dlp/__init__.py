"""DLP: find PII and secrets in prompts (and optionally answers); block, redact or mask them reversibly."""
from .config import CustomDetectorConfig, DlpConfig, Policy, PolicyOverride
from .detectors import BUILTIN, ENTRY_POINT_GROUP, Detector
from .middleware import Dlp
from .scanner import Finding, Scanner

__all__ = ["Dlp", "DlpConfig", "CustomDetectorConfig", "PolicyOverride", "Policy", "Detector", "BUILTIN",
           "ENTRY_POINT_GROUP", "Finding", "Scanner"]
