"""A hand-built linear bijection z = Q x for analysis tests (duck-types `encode` / `decode`)."""

import numpy as np
import tensorflow as tf

DIM = 8


class LinearBijection:
    """z = Q x with Q orthogonal, decode x = Q^T z; C = 2 logits.

    The logits are z_s = [<q1, x>, <q2, x>] with q1 = (a - r) / sqrt(2), q2 = (a + r) / sqrt(2)
    and a = e2, so D(x) = argmax z_s = [<r, x> > 0]; z_n are the remaining standard
    coordinates (all but e2 and r).

    Args:
        readout: the unit vector r (a standard basis vector other than e2).
    """

    def __init__(self, readout):
        a, eye = np.eye(DIM)[2], np.eye(DIM)
        rows = [(a - readout) / np.sqrt(2.0), (a + readout) / np.sqrt(2.0)]
        rows += [eye[k] for k in range(DIM) if k != 2 and not np.allclose(eye[k], readout)]
        self.q = tf.constant(np.stack(rows), tf.float32)
        np.testing.assert_allclose(self.q.numpy() @ self.q.numpy().T, np.eye(DIM), atol=1e-6)
        self.num_classes = 2

    def encode(self, x):
        z = tf.matmul(tf.convert_to_tensor(x, tf.float32), self.q, transpose_b=True)
        return z[:, :2], z[:, 2:]

    def decode(self, z_s, z_n):
        return tf.matmul(tf.concat([z_s, z_n], -1), self.q)
