"""The written policy: what to do with what the guards find, per tenant and per language.

`model` is the policy file's schema, `engine` resolves it per tenant and language and decides, `rules` is
its own rule guard, `verdict` the vocabulary (findings in, a verdict out)."""

from gateway.policy.engine import EffectivePolicy, PolicyEngine
from gateway.policy.model import CategoryPolicy, Policy, PolicyError, Rule, load_policy
from gateway.policy.verdict import Action, Finding, GuardResult, Stage, Steering, Verdict

__all__ = [
    "Action",
    "CategoryPolicy",
    "EffectivePolicy",
    "Finding",
    "GuardResult",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "Rule",
    "Stage",
    "Steering",
    "Verdict",
    "load_policy",
]
