"""Exact inversion of binarised neural nets by SAT (arXiv 2402.11995), made to propagate.

Train a :class:`BNN`, export it to an exact :class:`IntegerBNN`, :func:`encode` it as CNF with a
reified cardinality encoding chosen by name, then ask a :class:`SatInverter` for labels,
preimages (with constraints), enumerations and minimal flips; count preimages with
:func:`count_preimages` and sample them with :func:`sample_preimages`.
"""

from ._cardinality import CARDINALITY_ENCODINGS, list_cardinality_encodings, reify_atleast, unary_counter
from ._count import COUNTERS, CountResult, count_all_labels, count_preimages, dp_input_order, list_counters
from ._encode import Encoding, encode
from ._estimate import LabelShare, estimate_label_shares
from ._export import IntegerBNN, export_bnn, load_bnn_run, save_bnn_run
from ._invert import InferenceResult, Preimage, RobustnessResult, SatInverter, candidate_hint, local_search_candidate
from ._robust import exhaustive_flip_search
from ._model import BNN, BinaryLinear, BNNTrainConfig, InputBinarizer, bnn_accuracy, train_bnn
from ._sample import SampleResult, sample_preimages, save_marginal_heatmap
from ._solve import SOLVERS, BudgetedSolver, SatResult, SolveOutcome, list_solvers

__all__ = [
    "BNN", "BinaryLinear", "BNNTrainConfig", "InputBinarizer", "bnn_accuracy", "train_bnn",
    "IntegerBNN", "export_bnn", "save_bnn_run", "load_bnn_run",
    "CARDINALITY_ENCODINGS", "list_cardinality_encodings", "reify_atleast", "unary_counter",
    "Encoding", "encode",
    "SOLVERS", "list_solvers", "SatResult", "SolveOutcome", "BudgetedSolver",
    "SatInverter", "InferenceResult", "Preimage", "RobustnessResult", "candidate_hint", "local_search_candidate", "exhaustive_flip_search",
    "COUNTERS", "list_counters", "CountResult", "count_preimages", "count_all_labels", "dp_input_order", "LabelShare", "estimate_label_shares",
    "SampleResult", "sample_preimages", "save_marginal_heatmap",
]
