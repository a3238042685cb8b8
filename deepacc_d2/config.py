"""
``add_deepacc_config(cfg)``: the keys DeepACC adds to a fresh ``get_cfg()``.

Every key says what it means and, where the paper names it, its symbol (DeepACC, MICCAI;
equations referenced by number).
"""
from detectron2.config import CfgNode as CN


def add_deepacc_config(cfg):
    """
    Add the ``MODEL.DEEPACC``, ``TEST.KARYOTYPE``, ``SOLVER.EPOCHS`` and ``DATASETS.SYNTH``
    keys to ``cfg`` (in place). Call it right after ``get_cfg()``.
    """
    _C = cfg

    _C.MODEL.DEEPACC = CN()
    # Table 1 (b) "sep": a classification branch and a regression branch that share no
    # parameters (each its own stack of FCs on the pooled RoI features). False = detectron2's
    # shared box head.
    _C.MODEL.DEEPACC.SEPARATE_BRANCHES = False
    # Width of the FC layers of each branch (paper: 1024 x 1024, two layers).
    _C.MODEL.DEEPACC.FC_DIM = 1024
    _C.MODEL.DEEPACC.NUM_FC = 2

    # Margin branch (§2.2, Eq. 1): cosine classifier trained with Additive Angular Margin.
    _C.MODEL.DEEPACC.AAM = CN()
    _C.MODEL.DEEPACC.AAM.ENABLED = False
    _C.MODEL.DEEPACC.AAM.SCALE = 64.0  # s
    _C.MODEL.DEEPACC.AAM.MARGIN = 0.25  # m (radians)

    # Siamese inference branch (§2.3, Eq. 2): local class centers per image.
    _C.MODEL.DEEPACC.SIAMESE = CN()
    _C.MODEL.DEEPACC.SIAMESE.ENABLED = False
    # δ: a class's most confident proposal becomes its local center only if its margin-branch
    # probability for that class exceeds δ; else the global weight W_M,j is used.
    _C.MODEL.DEEPACC.SIAMESE.DELTA = 0.5
    # Whether gradients flow from the inference branch's loss into the selected centers.
    _C.MODEL.DEEPACC.SIAMESE.CENTER_GRAD = False

    # Group Inner-Adjacency loss (§2.4, Eq. 3) over the Denver groups.
    _C.MODEL.DEEPACC.GIA = CN()
    _C.MODEL.DEEPACC.GIA.ENABLED = False

    # Eq. 4: L = L_det + α L_AAM + β L_CE + γ L_GIA
    _C.MODEL.DEEPACC.AAM_LOSS_WEIGHT = 0.1  # α
    _C.MODEL.DEEPACC.CE_LOSS_WEIGHT = 1.0  # β
    _C.MODEL.DEEPACC.GIA_LOSS_WEIGHT = 0.1  # γ

    # Karyotype metrics (§3.1), used by KaryotypeEvaluator.
    _C.TEST.KARYOTYPE = CN()
    _C.TEST.KARYOTYPE.IOU_THRESH = 0.5  # a detection matches a ground truth at IoU >= this
    _C.TEST.KARYOTYPE.SCORE_THRESH = 0.5  # Acc/AER keep top-1 detections with score >= p
    _C.TEST.KARYOTYPE.NMS_THRESH = 0.7  # class-agnostic NMS before Acc/AER

    # Schedule in epochs (the paper: 24 epochs, LR x0.1 at 16 and 22). When EPOCHS > 0,
    # train_net.py converts them to MAX_ITER / STEPS from the training set's size and
    # SOLVER.IMS_PER_BATCH; 0 keeps MAX_ITER / STEPS as written.
    _C.SOLVER.EPOCHS = 0
    _C.SOLVER.EPOCH_STEPS = (16, 22)
