"""Evaluators chosen by config: ``config.evals = {name: {type, predictor}}``.

Each evaluator wraps a recipe predictor (:class:`jpose.recipes.base.Predictor`) and an
evaluation set; ``run(variables)`` returns ``(accumulator, {metric: value})``.

* ``h36m_protocols`` (:class:`~jpose.evaluators.protocols.ProtocolsEvaluator`):
  Protocols #1, #2, N-MPJPE and MPJVE per action, millimetres.
* ``pck3d_auc`` (:class:`~jpose.evaluators.pck.PCKEvaluator`): MPI-INF-3DHP's 3DPCK
  (150 mm) and AUC per scene group and activity, valid frames only.
* ``retrieval`` (:class:`~jpose.evaluators.retrieval.RetrievalEvaluator`): MCSS's
  Mean-PA-MPJPE@K of cross-view nearest neighbours and its oracle, millimetres.
"""

from jpose.evaluators.pck import PCKEvaluator
from jpose.evaluators.protocols import ProtocolsEvaluator
from jpose.evaluators.retrieval import RetrievalEvaluator

__all__ = ["TYPES", "PCKEvaluator", "ProtocolsEvaluator", "RetrievalEvaluator"]

#: Evaluator type name -> class.
TYPES = {ProtocolsEvaluator.kind: ProtocolsEvaluator, PCKEvaluator.kind: PCKEvaluator}
TYPES["relative_depth"] = __import__("jpose.evaluators.relative_depth", fromlist=["_"]).RelativeDepthEvaluator
TYPES[RetrievalEvaluator.kind] = RetrievalEvaluator  # MCSS view-invariant retrieval
