"""
The data loaders' mapper for every dataset: files (read with :func:`read_metaphase`) and
on-the-fly synthetic metaphases alike.
"""

import copy
import logging

import numpy as np
import torch

from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .augment import metaphase_augmentations
from .images import read_metaphase, test_resize
from .synth.writer import generate_image
from .synthetic import synth_annotations

logger = logging.getLogger(__name__)


class MetaphaseDatasetMapper(DatasetMapper):
    """
    DatasetMapper that draws an on-the-fly synthetic image instead of reading a file, and
    reads files with :func:`deepacc_d2.data.images.read_metaphase` (16-bit, float, RGBA, ...);
    the augmentations and annotation handling are DatasetMapper's. In training, a file that
    cannot be read is named in the log and another image is drawn in its place (detectron2's
    ``MapDataset`` retries on ``None``): one bad file never stops a long run. At test time it
    raises, naming the file.
    """

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        if not is_train:  # the one test-time resize (the same as detectron2's)
            ret["augmentations"] = [test_resize(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
        ret["augmentations"] = ret["augmentations"] + metaphase_augmentations(cfg, is_train)
        return ret

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        if "synth" in dataset_dict:
            seed, index, batch_id, config = dataset_dict.pop("synth")
            drawn = generate_image(seed, index, batch_id, config)
            dataset_dict.update(karyotype=drawn.karyotype, batch_id=batch_id)
            image = np.repeat(drawn.image[:, :, None], 3, axis=2)  # gray -> 3 equal channels
            dataset_dict["annotations"] = synth_annotations(drawn, self.use_instance_mask)
        else:
            try:
                image = read_metaphase(dataset_dict["file_name"])  # BGR
                if self.image_format == "RGB":
                    image = image[:, :, ::-1]
                utils.check_image_size(dataset_dict, image)
            except ValueError as e:  # unreadable, tiny, or not the size its labels say
                message = str(e)
                if dataset_dict["file_name"] not in message:
                    message = f"{dataset_dict['file_name']}: {message}"
                if not self.is_train:
                    raise ValueError(message) from e
                logger.error(f"{message}; skipped, training goes on with another image")
                return None

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


class _ReadableOnly:
    """detectron2's test loader less the images that cannot be read, which are named in one
    warning at the end: each image is decoded once, by the mapper."""

    def __init__(self, loader, dataset_name: str):
        self.loader, self.dataset_name = loader, dataset_name

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        bad = []
        for batch in self.loader:
            bad += [d["unreadable"] for d in batch if "unreadable" in d]
            kept = [d for d in batch if "unreadable" not in d]
            if kept:
                yield kept
        if bad:
            logger.warning(
                f"{self.dataset_name}: {len(bad)} image(s) cannot be read and are left out of "
                f"the evaluation:\n  " + "\n  ".join(bad)
            )


class _MarkUnreadable:
    """A test-time mapper that returns {"unreadable": message} for an image it cannot read."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except ValueError as e:
            return {"unreadable": str(e)}


def build_eval_loader(cfg, dataset_name: str):
    """detectron2's test loader over a registered dataset, read with the same mapper as
    training (16-bit, RGBA, ... images; on-the-fly synthetic ones); an image that cannot be
    read is left out and named."""
    loader = build_detection_test_loader(
        DatasetCatalog.get(dataset_name),
        mapper=_MarkUnreadable(MetaphaseDatasetMapper(cfg, is_train=False)),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    return _ReadableOnly(loader, dataset_name)
