"""`Profile` lives in `checkpoint_solver.problem.profile` (torch-free, beside the problems it
holds); this name stays for code that imported it from here."""

from checkpoint_solver.problem.profile import PROFILE_FORMAT, Profile, StageInfo, load_profile

__all__ = ["PROFILE_FORMAT", "Profile", "StageInfo", "load_profile"]
