"""The written policy: what to do with what the guards find, per tenant and per language."""

from gateway.policy.engine import EffectivePolicy, PolicyEngine
from gateway.policy.model import CategoryPolicy, Policy, PolicyError, Rule, load_policy

__all__ = [
    "CategoryPolicy",
    "EffectivePolicy",
    "Policy",
    "PolicyEngine",
    "PolicyError",
    "Rule",
    "load_policy",
]
