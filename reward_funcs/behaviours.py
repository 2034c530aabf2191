"""The behaviours people look for in TinyZero's outputs when the "aha moment" comes: verification, backtracking and
enumeration of attempts, as phrase families over the model's text. One definition for the rollout journal
(reward_funcs.journal) and the evaluation (analysis.metrics), so both count the same phrases."""

from __future__ import annotations

import re

# Behaviour patterns over the model's text (case-insensitive). Each is a phrase family people look for in
# TinyZero's outputs when the "aha moment" comes; tests/test_analysis.py holds written examples of each.
BEHAVIOURS = {
    # checking a candidate: "let me check", "verify", substituting back ("... = 60, correct")
    "verification": re.compile(
        r"\b(?:let me (?:check|verify|double[- ]check)|let's (?:check|verify)|to verify|verif(?:y|ying|ied)\b|"
        r"double[- ]check|check(?:ing)? (?:again|if|whether|the))"
        r"|= ?\d+(?:\.\d+)?,? (?:which is )?(?:correct|right)\b",
        re.IGNORECASE,
    ),
    # abandoning a line of work: "wait", "that doesn't work", "try another", "not quite", "instead"
    "backtracking": re.compile(
        r"\b(wait\b|that (?:doesn'?t|does not|won'?t|will not) work|(?:doesn'?t|does not) work|"
        r"try (?:another|a different|again|something else)|not (?:quite|right|correct)|"
        r"(?:too (?:big|small|high|low|large))|let me (?:try|reconsider|rethink)|instead)",
        re.IGNORECASE,
    ),
    # listing attempts one after another: "first try", "another (option|combination)", numbered tries
    "enumeration": re.compile(
        r"\b(first,? (?:let's|let me|i'?ll) try|(?:another|next) (?:option|combination|possibility|attempt|try)|"
        r"(?:option|attempt|try) (?:\d+|one|two|three)\b|what if|alternatively)",
        re.IGNORECASE,
    ),
}
