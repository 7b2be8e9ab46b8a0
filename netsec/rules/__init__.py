"""Suricata's rule language: parse rule files into Rules the detection engine runs."""
from netsec.rules.errors import RuleError
from netsec.rules.loader import RuleSet, load_rules
from netsec.rules.parser import parse_rule
from netsec.rules.rule import ACTION_ORDER, Rule, ThresholdSpec
from netsec.rules.variables import Variables

action_order = ACTION_ORDER

__all__ = ["ACTION_ORDER", "Rule", "RuleError", "RuleSet", "ThresholdSpec", "Variables",
           "action_order", "load_rules", "parse_rule"]
