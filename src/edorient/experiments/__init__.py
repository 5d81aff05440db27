"""The thesis' experiments at a fraction of their sizes: ``edorient reproduce``.

:func:`reproduce` runs the training protocol of the thesis (sections 3.4 and 4.1-4.3) on one
thesis-mode data set simulated by edorient and writes the thesis' tables with its own numbers
beside ours:

``pre``
    pre-experiment 1 (one set of 100,000: 80k train, 20k validation, 500 epochs; test 50,000 as
    5 subsets of 10,000; Tables 3.1/3.2) and pre-experiment 2, fine-tuning from model 1 over
    four more sets (100k/100k/100k/49.5k, 50 epochs each) with (i) every layer retrained
    (Tables 3.3/3.4) and (ii) the dense layers only (Tables 3.5/3.6); summaries 3.7/3.8 and
    Table 3.9 (time per epoch of stages 2-4 / 5 and the checkpoint size).
``1``
    experiment 1: the hold-out split (10,000 test), the training set cut into five subsets
    (100k x 4 + 89.5k) (1) at random, (2) by K-means scheme (i), (3) by K-means scheme (ii)
    (:mod:`edorient.data.kmeans`), each fine-tuned subset by subset with the dense layers
    only from stage 2 on (500 epochs on subset 1, 50 on each later one); Tables 4.1-4.8 (after
    subset 1 and after subset 5).
``2``
    experiment 2: (4) five equal random subsets, the same protocol; Tables 4.9/4.10.
``3``
    experiment 3: (5)/(6) every training image at once (500 epochs) after resizing to 56 and
    to 28 pixels; Tables 4.11/4.12.

and ``OUT/summary.md`` with Tables 4.13/4.14 (ours beside the thesis') and the thesis'
conclusions checked on our numbers.

Scale rule
----------
A fraction ``F`` in (0, 1] of the thesis' sizes:

- ``N`` single-crystal orientations, the smallest with ``C(N, 2) >= F x 499,500`` (``F = 1``:
  N = 1,000, the thesis' 499,500 pairs); every unordered pair is one image;
- every set of the protocol is the thesis' share of ``C(N, 2)`` (hold-out test
  10,000/499,500; pre-experiments: test 50,000/499,500, sets 100k/100k/100k/100k/49.5k;
  chapter 4: subsets 100k x 4 + 89.5k or five equal); validation 20 % of each set;
- epochs: ``max(1, round(E x s))`` for the thesis' ``E`` (500 for pre-experiment 1, the first
  subset of chapter 4 and experiment 3; 50 for every later subset) and an epoch scale ``s``
  (default ``F``), so the training work goes as ``F^2``;
- sizes relative to the image side ``S``: experiment 3 resizes to ``S x 56/224`` and
  ``S x 28/224``, K-means scheme (i) clusters at ``S x 56/224``, scheme (ii) at
  ``S x 112/224`` (the thesis' 56, 28, 56 and 112 at ``S = 224``);
- an optional time budget caps the *training* time: each stage gets the share of it that
  its planned work has of all the planned work, and stops early (after validating) when its
  share is spent. Work is epochs x training images x ``sqrt(input side / S)``: on a CPU a
  smaller input costs less per image, but far from in proportion to its pixels (measured on
  2 cores: the compact model at 16 px trains about 2x, not 16x, faster than at 64 px).

Profiles: ``F >= 0.5`` defaults to the GPU profile (thesis CNN, 224 px, Adadelta with Keras'
defaults and batch 128, no budget); below, the CPU profile (``compact``, 64 px, AdamW with a
cosine schedule per stage and batch 32, a 40-minute training budget). Both train with the
order-free thesis loss (eq. 3.2 under the better head-to-grain assignment): our pair order
(grain A = the lower orientation index) carries no information a network could learn.

Every stage is resumable: a finished stage (``done``) is skipped, an interrupted one resumes
from ``last.pt``, and finished evaluations are reused.
"""

from edorient.experiments.plan import (
    EXPERIMENTS,
    Plan,
    ReproduceConfig,
    Stage,
    make_plan,
    orientations_for_scale,
    parse_experiments,
    scaled_epochs,
)
from edorient.experiments.run import evaluate_checkpoint, reproduce
from edorient.experiments.tables import Table, conclusions, paired_difference, stage_progress, summary_markdown

__all__ = [
    "EXPERIMENTS",
    "Plan",
    "ReproduceConfig",
    "Stage",
    "Table",
    "conclusions",
    "evaluate_checkpoint",
    "make_plan",
    "orientations_for_scale",
    "paired_difference",
    "parse_experiments",
    "reproduce",
    "scaled_epochs",
    "stage_progress",
    "summary_markdown",
]
