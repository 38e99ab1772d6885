"""Constants the test modules share (``from helpers import SMALL``: conftest.py puts tests/ on
sys.path, as for textbook.py).
"""
import dataclasses
import os
import signal
import threading
from contextlib import contextmanager

from pynq_bnn.spec.network import Network

#: The small topology most tests run: every layer kind (first layer, binary conv with and
#: without pool, hidden dense, last dense) at a tiny size, on 8x8 inputs: a classification
#: costs little even with the numpy reference.
SMALL = Network(conv_channels=(64, 64, 128), pool_after=(False, True, True), fc_units=(64,),
                n_classes=10, image_size=8)

#: The same topology on CIFAR-10's 32x32 inputs, for the tests that feed it images and camera
#: frames (Classifier, CLI, camera).
SMALL_32 = dataclasses.replace(SMALL, image_size=32)

#: The CIFAR-10 data beside the checkout (../shared/data/cifar10: test.npz, train.npz); tests that
#: need it skip without it (conftest.py's ``cifar10_test`` fixture).
CIFAR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                         "cifar10")


#: Seconds one input may take before no_hang calls it a hang (generous: CI shares its cores).
HANG_S = 20


@contextmanager
def no_hang(seconds: int = HANG_S):
    """Fail (instead of hanging CI) if the body runs longer than ``seconds`` (SIGALRM; only in
    the main thread, elsewhere the body just runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise AssertionError(f"no answer within {seconds} s (a hang)")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
