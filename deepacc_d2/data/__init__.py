from .datasets import (  # noqa: F401
    DatasetFileError,
    datasets_root,
    load_cil24_voc,
    load_karyotype_coco_json,
    register_cil24_voc,
    register_coco_folders,
    register_karyotype_coco,
)
