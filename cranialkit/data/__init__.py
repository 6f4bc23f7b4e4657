"""Data: procedural skull phantoms, dataset layouts (SkullBreak, SkullFix, MUG500+, phantom) and their cases."""
