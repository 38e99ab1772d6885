"""The specification: what every implementation must agree with, integer for integer.

The topology (:mod:`.network`), the one bit-packing order (:mod:`.bitpack`), batch norm folded
into integer thresholds (:mod:`.folding`), the parameter file (:mod:`.params`), the bit-exact numpy
model (:mod:`.first_layer` for layer 1, :mod:`.reference` for the rest) and the kernel ABI
(:mod:`.abi`). Nothing here imports from the rest of the package except :mod:`pynq_bnn.errors`.
"""
