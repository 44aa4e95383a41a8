"""`bfsdata verify`: does every manifest row point at the data it claims, and nothing more?"""

from bfsdata.verify.stage import VerifyError, VerifyReport, verify

__all__ = ["VerifyError", "VerifyReport", "verify"]
