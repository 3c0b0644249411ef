import torch
from monai.data import MetaTensor, list_data_collate

from common.data import plain_tensor, prepare_plain_batch


def test_prepare_plain_batch_gives_plain_tensors_and_keeps_the_batch_metadata():
    items = [
        {"image": MetaTensor(torch.rand(1, 4, 4), meta={"filename_or_obj": f"img{i}.nii.gz"}),
         "label": MetaTensor(torch.randint(0, 3, (1, 4, 4)).float())}
        for i in range(2)
    ]  # fmt: skip
    batch = list_data_collate(items)
    image, label = prepare_plain_batch(batch, torch.device("cpu"))
    assert type(image) is torch.Tensor and type(label) is torch.Tensor
    assert image.shape == (2, 1, 4, 4) and label.shape == (2, 1, 4, 4)
    assert torch.equal(image, batch["image"].as_tensor()) and torch.equal(label, batch["label"].as_tensor())
    assert image.data_ptr() == batch["image"].data_ptr()  # a view on CPU, not a copy
    assert batch["image"].meta["filename_or_obj"] == ["img0.nii.gz", "img1.nii.gz"]  # handlers still read it
    image, label = prepare_plain_batch({"image": batch["image"]}, torch.device("cpu"))
    assert label is None


def test_plain_tensor_accepts_arrays_and_tensors():
    t = torch.arange(3.0)
    assert plain_tensor(t) is t
    assert torch.equal(plain_tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert type(plain_tensor(MetaTensor(t))) is torch.Tensor
