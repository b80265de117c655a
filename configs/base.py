"""Defaults shared by every experiment; the other config files override what differs.

Every field other parts of the project rely on is here (docs/design.md, "Configs").
A field whose default is None is an `ml_collections.config_dict.placeholder(type)`, so that
`--config.data.idx_dir=DIR` and the like can be overridden from the command line (absl cannot
parse a value for a field of type NoneType).
"""

import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "spheres"            # spheres | mnist | fashion_mnist | imagenet2012
    config.data.source = "auto"             # auto | tfds | idx
    config.data.idx_dir = config_dict.placeholder(str)  # directory with the four IDX files (offline)
    config.data.data_dir = config_dict.placeholder(str)  # TFDS data dir
    config.data.batch_size = 64             # global batch size
    config.data.seed = config.get_ref("seed")
    config.data.dequantize = False          # uniform noise of one grey level (images)
    config.data.random_shift = 0            # max shift in pixels (the paper's MNIST: 3)
    config.data.shuffle_buffer = 10_000

    config.model = ml_collections.ConfigDict()
    config.model.kind = "dense"             # dense | conv | imagenet
    config.model.reversible_gradients = False

    config.train = ml_collections.ConfigDict()
    config.train.loss = "ice"               # ce | ce_mle | ice
    config.train.epochs = 1
    config.train.steps_per_epoch = config_dict.placeholder(int)  # None: one pass over the training split
    config.train.eval_steps = config_dict.placeholder(int)  # None: the whole test split
    config.train.optimizer = "adam"         # adam | adamax | sgd
    config.train.learning_rate = 1e-3
    config.train.momentum = 0.9             # sgd only
    config.train.weight_decay = 0.0         # decoupled, in the optimizer
    config.train.lr_schedule = "step"         # step: lr_decay_* below (0: constant); cosine: learning_rate to 0 over the epochs, per step
    config.train.lr_decay_epochs = 0        # multiply lr by lr_decay_factor every n epochs (0: off)
    config.train.lr_decay_factor = 0.2
    config.train.clipnorm = config_dict.placeholder(float)  # None: no gradient clipping
    config.train.jit_compile = False        # XLA; see bench/speed.py
    config.train.distribute = "auto"        # auto | none | mirrored | multi_worker
    config.train.metamer_images = 8         # metamer grid in TensorBoard each epoch (images only)
    config.train.plane_resolution = 41      # figure-3 planes in TensorBoard each epoch (spheres; 0: off)
    config.train.export = True              # SavedModel in workdir/export at the end
    config.train.checkpoint_every_steps = 0  # also checkpoint every n steps within an epoch (0: epoch ends only)

    config.ice = ml_collections.ConfigDict()
    # Chosen by the ablations in RESULTS.md ("iCE ablations").
    config.ice.semantic_prior = "class_conditional"  # none | standard | class_conditional (density of z_s)
    config.ice.adversary = "uniform"        # uniform | shuffled (authors' code) | negative (paper, Def. 7)
    config.ice.beta = 1.0                   # weight of the adversarial term
    config.ice.warmup_steps = (500, 2000)   # beta is 0 until the first step, full from the second; () off
    config.ice.gamma = 1.0                  # weight of L_MLE (ice and ce_mle)
    config.ice.nuisance_steps = 5           # D_phi steps per batch (authors' code)
    config.ice.nuisance_first = True        # D_phi's steps on a batch before the network's (authors' code); False: after
    config.ice.nuisance_hidden_units = (512, 512, 512)
    config.ice.nuisance_dropout = 0.0
    config.ice.nuisance_optimizer = "adamax"  # authors' code
    config.ice.nuisance_learning_rate = 1e-3
    return config
