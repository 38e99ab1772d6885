"""The host side (the ARM cores on a board): image preprocessing, layer 1 with the threshold and
bit packing fused (:mod:`.layer1`), the batch pipeline that overlaps layer 1 with the kernel
(:mod:`.pipeline`), the :class:`~.classifier.Classifier` and the shipped models."""
