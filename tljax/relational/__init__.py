"""Relational transfer: the student learns how a teacher relates the examples.

What this is not. In Pan and Yang's survey ("A survey on transfer
learning", IEEE TKDE 2010), *relational-knowledge transfer* is the fourth
answer to "what to transfer", next to instances, feature representations and
parameters. There the data are relational — not i.i.d., but entities linked
by several relations (networked, social-network or bibliographic data,
written as first-order facts) — and what carries over is a mapping between
the relations of a source and a target domain. TAMAR (Mihalkova, Huynh and
Mooney, "Mapping and revising Markov logic networks for transfer learning",
AAAI 2007) maps the predicates of a Markov logic network learned on the
source to the target's predicates, choosing the mapping that scores best on
the target data, and then revises the mapped clauses; deep transfer via
second-order Markov logic (Davis and Domingos, ICML 2009) learns
domain-independent second-order clique templates on the source and
instantiates them with the target's predicates. Those methods need
relational data (typed predicates and ground facts, not arrays) and a
combinatorial search over predicate mappings and clause structure scored by
pseudo-likelihood — discrete structure learning with no differentiable
network to train and nothing for ``jax.jit``/``jax.grad`` to act on — so
they are out of scope for tljax, whose inputs are tensors and whose
transfer happens through differentiable models; a statistical-relational
learning system (e.g. Alchemy) is the right tool for them.

What this is. The part of the idea that does fit: the knowledge to carry
over is the *structure among examples* rather than each example's output.
Here the relations are not given with the data but induced by a trained
teacher network's representation — distances, angles and similarities
between the examples of a batch — and a student network is trained to
reproduce them, with losses that are pure, jit/grad/vmap-safe functions of
the two networks' batch outputs:

* :func:`rkd_distance`, :func:`rkd_angle`, :func:`rkd` — relational
  knowledge distillation (Park, Kim, Lu and Cho, CVPR 2019): pairwise
  distances and triplet angles, invariant to the scale, rotation and
  translation of either embedding, so student and teacher may differ in
  dimension;
* :func:`similarity_preserving` — similarity-preserving distillation (Tung
  and Mori, ICCV 2019): the row-normalised ``b × b`` similarity matrix of
  the batch, for feature maps of any shape;
* :func:`knowledge_distillation` — Hinton, Vinyals and Dean's soft targets
  (2015), the per-example baseline both papers compare with (RKD's released
  classification code also adds its losses to it).

Why this instead: relations that a network induces can be computed for any
input modality and any pair of architectures, need no shared feature
space, and are differentiated straight into the student, which is what the
rest of tljax (parameter, feature and instance transfer) is built on.

Conventions: the student comes before the teacher in every signature;
features are ``(batch, dim)`` (``(batch, ...)`` for
:func:`similarity_preserving`), logits ``(batch, num_classes)``, with the
same batch of examples on both sides. The teacher's gradient is stopped.
Losses return a float32-or-wider scalar: the bare term, except :func:`rkd`,
which combines its two terms with the paper's weights. Shapes are checked
when traced, hyper-parameters when they are Python numbers (a traced one
passes through, for ``jax.vmap`` sweeps), finiteness when the arrays are
concrete; each error is a ``ValueError`` naming the argument.
"""

from tljax.relational.rkd import rkd, rkd_angle, rkd_distance
from tljax.relational.similarity_preserving import similarity_preserving
from tljax.relational.soft_targets import knowledge_distillation

__all__ = [
    "knowledge_distillation",
    "rkd",
    "rkd_angle",
    "rkd_distance",
    "similarity_preserving",
]
