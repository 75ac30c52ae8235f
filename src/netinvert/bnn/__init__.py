"""Exact inversion of binarised neural nets by SAT (arXiv 2402.11995), made to propagate.

Train a :class:`BNN`, export it to an exact :class:`IntegerBNN`, :func:`encode` it as CNF with a
reified cardinality encoding chosen by name, then ask a :class:`SatInverter` for labels,
preimages (with constraints), enumerations and minimal flips; count preimages with
:func:`count_preimages` (a method by name) and sample them with :func:`sample_preimages`.
A net can learn an extra "garbage" class for the inputs the data does not support
(:func:`train_with_garbage`, ``BNNRunConfig(garbage_rounds=...)``).
The workflows are :func:`run_bnn_training` (train, export, verify, write a run folder) and
:func:`run_bnn_query` (every query on such a run), which the CLI, the demo and the benchmarks call.
"""

from ._blocks import BLOCK_LAYOUTS, block_mask, list_block_layouts
from ._cardinality import CARDINALITY_ENCODINGS, list_cardinality_encodings, reify_atleast, unary_counter
from ._count import COUNTERS, CountMethod, CountResult, count_preimages, dp_input_order, list_counters
from ._encode import Encoding, encode
from ._estimate import LabelShare, estimate_label_shares
from ._export import BNNRun, IntegerBNN, export_bnn, load_bnn_run, save_bnn_run
from ._garbage import (
    GARBAGE_SOURCES,
    GarbageConfig,
    GarbageResult,
    GarbageSource,
    list_garbage_sources,
    nearest_hamming,
    train_with_garbage,
)
from ._invert import InferenceResult, InferenceSummary, Preimage, Preimages, SatInverter, infer_all
from ._local_search import candidate_hint, local_search_candidate
from ._min_flips import RobustnessResult, min_flips
from ._model import BNN, BinaryLinear, BNNTrainConfig, InputBinarizer, bnn_accuracy, train_bnn
from ._pipeline import (
    QUERIES,
    BNNQuery,
    BNNQueryParams,
    BNNQueryResult,
    BNNRunConfig,
    BNNTrainingResult,
    list_bnn_queries,
    run_bnn_query,
    run_bnn_training,
)
from ._robust import exhaustive_flip_search
from ._sample import SampleResult, sample_preimages, save_marginal_heatmap
from ._solve import (
    DEFAULT_MEMORY_GB,
    SOLVERS,
    BudgetedSolver,
    ChildLimits,
    SatResult,
    SolveOutcome,
    child_limits,
    default_solver,
    list_solvers,
    run_streaming,
)

__all__ = [
    "BNN", "BinaryLinear", "BNNTrainConfig", "InputBinarizer", "bnn_accuracy", "train_bnn",
    "BLOCK_LAYOUTS", "block_mask", "list_block_layouts",
    "IntegerBNN", "BNNRun", "export_bnn", "save_bnn_run", "load_bnn_run",
    "CARDINALITY_ENCODINGS", "list_cardinality_encodings", "reify_atleast", "unary_counter",
    "Encoding", "encode",
    "SOLVERS", "list_solvers", "default_solver", "SatResult", "SolveOutcome", "BudgetedSolver",
    "run_streaming", "ChildLimits", "child_limits", "DEFAULT_MEMORY_GB",
    "SatInverter", "InferenceResult", "InferenceSummary", "infer_all", "Preimage", "Preimages",
    "RobustnessResult", "min_flips", "candidate_hint", "local_search_candidate", "exhaustive_flip_search",
    "COUNTERS", "CountMethod", "list_counters", "CountResult", "count_preimages", "dp_input_order",
    "LabelShare", "estimate_label_shares",
    "SampleResult", "sample_preimages", "save_marginal_heatmap",
    "BNNRunConfig", "BNNTrainingResult", "run_bnn_training",
    "GarbageConfig", "GarbageResult", "GarbageSource", "GARBAGE_SOURCES", "list_garbage_sources", "nearest_hamming",
    "train_with_garbage",
    "BNNQueryParams", "BNNQuery", "BNNQueryResult", "QUERIES", "list_bnn_queries", "run_bnn_query",
]

from ._factored import count_labels_factored, input_groups, neuron_blocks  # noqa: E402 (exact counts by blocks)

__all__ += ["count_labels_factored", "input_groups", "neuron_blocks"]
