"""The refserver conformance suite: probe applications, cases as data, and a runner.

``python -m refserver.conformance --help`` runs it against refserver or any server command; the
written spec the cases check is in the repository's ``spec/`` directory.
"""

from .cases import INTERFACES, Case, CaseError, load_cases
from .runner import CaseResult, Runner, TargetError, TargetSpec

__all__ = [
    "INTERFACES",
    "Case",
    "CaseError",
    "CaseResult",
    "Runner",
    "TargetError",
    "TargetSpec",
    "load_cases",
]
