"""Procedural multi-view data: an analytic numpy ray caster and a generator that writes the CO3D v2 layout.

The scenes are textured primitives on a ground plane, seen from a CO3D-like orbit; the side facing away from
view 0 is drawn from a few discrete modes, so single-view completion is ambiguous by construction.
"""
