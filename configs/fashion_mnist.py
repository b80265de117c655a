"""Fashion-MNIST conv fiRevNet (the paper's MNIST recipe, appendix B, on Fashion-MNIST).

`:cpu` (default) is sized for a 2-core CPU: 3 stages x 4 blocks x 48 filters with a global
branch in every coupling subnet and a semantic coupling at the end, random shifts of 1 px, 12
epochs with a cosine learning rate (wall times in RESULTS.md); `:paper` is appendix B: 3 stages x 16 blocks x 128
filters with batch norm, Adamax 1e-3, 100 epochs, lr x0.2 every 30, batch 64, l2 1e-4, random
shifts of 3 px, dequantised inputs, nuisance classifier 3 x 512, 5 nuisance steps (authors' code);
`:quick` is a seconds-long run for tests of `python -m train.reproduce --quick`.
"""

from configs import base

VARIANTS = ("cpu", "quick", "paper")


def get_config(variant="cpu"):
    config = base.get_config()
    config.data.name = "fashion_mnist"
    config.data.idx_dir = None              # default: /usr/share/datasets/fashion-mnist (Debian)
    config.data.dequantize = True
    config.data.random_shift = 1            # RESULTS.md: CE at 12 epochs overfits (train 1.4 %, test 10.1 %)
    config.data.batch_size = 64
    config.model.kind = "conv"
    config.model.blocks_per_stage = 4
    config.model.filters = 48
    config.model.batch_norm = False
    config.model.factor_out = False         # every logit a DC component (builders.conv)
    config.model.global_context = True      # RESULTS.md: -8.5 points of iCE logit error at 4 epochs
    config.model.semantic_head_units = 256  # RESULTS.md: -8 points of iCE logit error at 4 epochs
    config.model.semantic_head_clamp = 0.0  # additive g; > 0: g also scales z_n (RESULTS.md: 2.0 not kept)
    config.model.semantic_head_blocks = 2   # couplings of z_n's halves conditioned on the logits (RESULTS.md)
    config.model.affine_clamp = 0.0         # additive couplings (volume-preserving); > 0: affine, |log s| < clamp
    config.train.optimizer = "adamax"
    config.train.learning_rate = 1e-3
    config.train.epochs = 12                # 12 passes over the 60k training images
    config.train.lr_schedule = "cosine"     # to 0 over the 12 epochs (RESULTS.md: cosine vs constant)
    config.train.steps_per_epoch = None
    config.train.eval_steps = None
    config.ice.nuisance_hidden_units = (512, 512, 512)
    # RESULTS.md (12 epochs with the semantic coupling): the uniform form at beta 0.3 adds 28
    # points of nuisance error to CE + MLE's for 5.3 of logit error; at 0.1, 2.4 for 4.4.
    config.ice.adversary = "uniform"
    config.ice.beta = 0.3
    config.ice.warmup_steps = (200, 800)
    if variant == "paper":
        config.data.random_shift = 3
        config.model.blocks_per_stage = 16
        config.model.filters = 128
        config.model.batch_norm = True
        config.model.global_context = False  # the paper's subnets are 3x3 -> 1x1 -> 3x3 only
        config.model.semantic_head_units = 0  # the paper reads the logits straight from DC components
        config.train.epochs = 100
        config.train.lr_schedule = "step"
        config.train.steps_per_epoch = None
        config.train.eval_steps = None
        config.train.lr_decay_epochs = 30
        config.train.lr_decay_factor = 0.2
        config.train.weight_decay = 1e-4
        config.ice.warmup_steps = (5_000, 20_000)
        config.ice.adversary = "shuffled"    # the authors' code, at their weight
        config.ice.beta = 0.05
    elif variant == "quick":
        config.data.batch_size = 32
        config.data.shuffle_buffer = 1_000
        config.model.blocks_per_stage = 1
        config.model.filters = 8
        config.train.epochs = 1
        config.train.steps_per_epoch = 10
        config.train.eval_steps = 4
        config.train.metamer_images = 0
        config.ice.nuisance_hidden_units = (64, 64, 64)
        config.ice.warmup_steps = (2, 5)
    elif variant != "cpu":
        raise ValueError(f"Unknown variant {variant!r}; expected 'cpu', 'quick' or 'paper'.")
    return config
