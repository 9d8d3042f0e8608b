"""Training data layout, errors that name the file, splits, hashing, augmentation."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import tifffile
from training_helpers import make_folder

from nwwatch.io import write_volume_tiff
from nwwatch.normalize import intensity_range, normalize_image
from training.augment import AugmentConfig, augment, geometric, random_crop
from training.data import (
    DatasetLayoutError,
    load_folder,
    load_volume_slice,
    make_split,
)


def test_folder_loads_pairs_by_stem_and_normalises(tmp_path):
    root = make_folder(tmp_path / "d", n=4, unlabeled=3)
    data = load_folder(root)
    assert [s.stem for s in data.labeled] == ["img00", "img01", "img02", "img03"]
    raw = tifffile.imread(root / "images" / "img02.tif")
    np.testing.assert_array_equal(data.labeled[2].image, normalize_image(raw))
    assert data.labeled[2].label.dtype == np.uint8
    assert len(data.unlabeled) == 3  # every page of the multi-page stack
    assert data.class_names == ("background", "nanowire", "droplet") and data.kind == "insitu"


def test_images_at_top_level_as_synth_writes_them(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    for path in (root / "images").iterdir():
        path.rename(root / path.name)
    (root / "images").rmdir()
    assert len(load_folder(root).labeled) == 2


def test_dataset_hash_changes_with_a_label(tmp_path):
    root = make_folder(tmp_path / "d", n=3)
    before = load_folder(root).sha256()
    assert load_folder(root).sha256() == before
    label = cv2.imread(str(root / "labels" / "img01.png"), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 255
    cv2.imwrite(str(root / "labels" / "img01.png"), label)
    assert load_folder(root).sha256() != before


def _expect(root, match, name):
    with pytest.raises(DatasetLayoutError, match=match) as info:
        load_folder(root)
    assert info.value.path.name == name


def test_missing_label_names_the_image(tmp_path):
    root = make_folder(tmp_path / "d", n=3)
    (root / "labels" / "img01.png").unlink()
    _expect(root, "no label", "img01.tif")


def test_a_label_saved_as_jpeg_is_named(tmp_path):
    # before: "no label for this image (expected labels/img01.png)" beside labels/img01.jpg
    root = make_folder(tmp_path / "d", n=3)
    label = root / "labels" / "img01.png"
    cv2.imwrite(str(label.with_suffix(".jpg")), cv2.imread(str(label), cv2.IMREAD_UNCHANGED))
    label.unlink()
    _expect(root, r"no label for this image: .*img01\.jpg is not read \(labels are PNG or "
                  r"TIFF", "img01.tif")


def test_frames_saved_as_jpeg_are_named(tmp_path):
    # before: "label without an image (expected images/img01.tif)" beside images/img01.jpg,
    # and with JPEG frames only, "no images (.tif, .tiff, .png)"
    root = make_folder(tmp_path / "d", n=2)
    image = root / "images" / "img01.tif"
    cv2.imwrite(str(image.with_suffix(".jpg")), tifffile.imread(image))
    image.unlink()
    _expect(root, r"label without an image \(expected .*img01\.tif\); img01\.jpg is not "
                  r"read \(frames are TIFF or PNG", "img01.png")
    (root / "images" / "img00.tif").unlink()
    _expect(root, r"no images \(\.tif, \.tiff, \.png\) in this folder \(img01\.jpg is not "
                  r"read: convert it to TIFF or PNG\)", "images")


def test_a_label_named_in_another_letter_case_is_named(tmp_path):
    # before: "no label for this image (expected labels/img01.png)" beside labels/IMG01.png,
    # where labels/img01_mask.png was named
    root = make_folder(tmp_path / "d", n=3)
    (root / "labels" / "img01.png").rename(root / "labels" / "Img01.png")
    _expect(root, r"no label for this image \(expected .*img01\.png\); Img01\.png is there, "
                  r"a name that differs in letter case only", "img01.tif")


def test_images_in_sub_folders_are_named(tmp_path):
    # before: images/sub/ and labels/sub/ were passed over without a word, and with every pair
    # in sub-folders the error was "no images (.tif, .tiff, .png) in this folder"
    from nwwatch.io.dataset import nested_images_warning, pair_folder

    root = make_folder(tmp_path / "d", n=4)
    for folder, suffix in (("images", "tif"), ("labels", "png")):
        (root / folder / "day2").mkdir()
        (root / folder / ".ipynb_checkpoints").mkdir()  # hidden: not a sub-folder of frames
        for stem in ("img02", "img03"):
            (root / folder / f"{stem}.{suffix}").rename(root / folder / "day2" / f"{stem}.{suffix}")
        shutil.copy(root / folder / f"img00.{suffix}", root / folder / ".ipynb_checkpoints")
    assert [stem for stem, _, _ in pair_folder(root)] == ["img00", "img01"]
    warning = nested_images_warning(root)
    assert warning == (f"images in sub-folders of {root} are not read: images/day2 (2 images), "
                       f"labels/day2 (2 images); a DATA folder is flat: move them up into "
                       f"images/ (their labels into labels/)")
    for stem in ("img00", "img01"):
        for folder, suffix in (("images", "tif"), ("labels", "png")):
            (root / folder / f"{stem}.{suffix}").rename(root / folder / "day2" / f"{stem}.{suffix}")
    _expect(root, r"no images \(\.tif, \.tiff, \.png\) in this folder; its sub-folders are not "
                  r"read: images/day2 \(4 images\): a DATA folder is flat, move the images up "
                  r"into images/", "images")
    # one label left in a sub-folder is named where its image asks for it
    for stem in ("img00", "img01", "img02", "img03"):
        (root / "images" / "day2" / f"{stem}.tif").rename(root / "images" / f"{stem}.tif")
    for stem in ("img00", "img01", "img02"):
        (root / "labels" / "day2" / f"{stem}.png").rename(root / "labels" / f"{stem}.png")
    _expect(root, r"no label for this image \(expected .*img03\.png\); labels/day2/img03\.png "
                  r"is there, in a sub-folder, which is not read", "img03.tif")


def test_the_synth_layout_has_no_sub_folder_warning(tmp_path):
    # images directly in DATA (nwwatch synth): labels/ and unlabeled/ are its layout
    from nwwatch.io.dataset import nested_images_warning

    root = make_folder(tmp_path / "d", n=2, unlabeled=2)
    for path in (root / "images").iterdir():
        path.rename(root / path.name)
    (root / "images").rmdir()
    assert nested_images_warning(root) is None


@pytest.mark.parametrize("quality", [95, 100])
def test_a_jpeg_label_named_png_is_named_as_jpeg(tmp_path, quality):
    # Saved as JPEG under the .png name, its edge values look like another cause: a wire rim
    # "resized with linear interpolation" (quality 95), "classes counted from 1" (100)
    root = make_folder(tmp_path / "d", n=3)
    label = root / "labels" / "img01.png"
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    ok, jpeg = cv2.imencode(".jpg", ids, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    label.write_bytes(jpeg.tobytes())
    _expect(root, r"a JPEG file named \.png .*save the labels as PNG", "img01.png")


def test_a_droplet_painted_with_antialiasing_is_named_as_such(tmp_path):
    # GIMP's default: a selection filled with grey 2 has antialiased edges; on a 0 background
    # they round to 1, a wire rim round the droplet: the error names painting as well as resizing
    root = make_folder(tmp_path / "d", n=2, size=96)
    path = root / "labels" / "img01.png"
    ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    droplet = cv2.GaussianBlur((ids == 2).astype(np.float32), (0, 0), 0.7)
    painted = np.where(ids == 1, 1.0, 0.0) * (1 - droplet) + 2 * droplet
    cv2.imwrite(str(path), np.rint(painted).astype(np.uint8))
    _expect(root, r"painted with antialiasing .*GIMP: the Pencil tool", "img01.png")


def test_label_without_image(tmp_path):
    root = make_folder(tmp_path / "d", n=3)
    (root / "images" / "img02.tif").unlink()
    _expect(root, "without an image", "img02.png")


def test_label_values_out_of_range(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    label = np.zeros((48, 48), np.uint8)
    label[3, 3] = 7
    cv2.imwrite(str(root / "labels" / "img00.png"), label)
    _expect(root, r"values \[7\] out of range", "img00.png")


def test_shape_mismatch(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    cv2.imwrite(str(root / "labels" / "img01.png"), np.zeros((40, 48), np.uint8))
    _expect(root, "shape", "img01.png")


@pytest.mark.parametrize("write, reason", [
    (lambda p, img: tifffile.imwrite(p, np.repeat(img[..., None], 3, 2), photometric="rgb"),
     "3 channels per pixel"),
    (lambda p, img: tifffile.imwrite(p, img.astype(np.float64)),
     "pixel type float64 is not supported"),
])
def test_tiffs_the_service_refuses_are_refused_with_its_reason(tmp_path, write, reason):
    # The DATA folder reads TIFFs with the service's reader (nwwatch.io.read_frames).
    from nwwatch.io import InputError, read_frames

    root = make_folder(tmp_path / "d", n=2)
    path = root / "images" / "img01.tif"
    write(path, tifffile.imread(path))
    with pytest.raises(InputError) as service:
        read_frames(path)
    _expect(root, reason, "img01.tif")
    with pytest.raises(DatasetLayoutError) as info:
        load_folder(root)
    assert info.value.reason == service.value.reason


def test_label_pngs_in_colour_or_with_transparent_pixels_are_refused(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    path = root / "labels" / "img01.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.dstack([label, label, label]))  # grey saved as RGB: read as grey
    assert np.array_equal(load_folder(root).labeled[1].label, label)
    cv2.imwrite(str(path), np.dstack([label, label * 50, label]))
    _expect(root, "colour image", "img01.png")
    # before: the alpha channel was dropped, so pixels painted transparent (meant as "not
    # labelled") trained as whatever grey lay under them, mostly background
    alpha = np.full_like(label, 255)
    alpha[:, :10] = 0
    cv2.imwrite(str(path), np.dstack([label, label, label, alpha]))
    _expect(root, "480 transparent pixels", "img01.png")
    cv2.imwrite(str(path), np.dstack([label, label, label, np.full_like(label, 255)]))
    assert np.array_equal(load_folder(root).labeled[1].label, label)  # opaque: the grey


def test_a_label_image_with_no_labeled_pixel_is_refused(tmp_path):
    # before: trained on nothing (loss 0.0000, mIoU nan), then a traceback at the export
    # ("'nwwatch' metadata does not read back unchanged": NaN metrics); held out, it made
    # every validation score NaN
    root = make_folder(tmp_path / "d", n=3)
    cv2.imwrite(str(root / "labels" / "img02.png"), np.full((48, 48), 255, np.uint8))
    _expect(root, r"no labeled pixel \(every pixel 255", "img02.png")


def test_empty_folder(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels").mkdir()
    _expect(tmp_path / "d", "no images", "images")
    # A DATA folder with nothing in it says what it should hold (before: "labels folder not
    # found", as if the images were there).
    (tmp_path / "e").mkdir()
    _expect(tmp_path / "e", r"empty folder: expected DATA/images/<stem>\.tif and "
                            r"DATA/labels/<stem>\.png", "e")


@pytest.mark.parametrize("sub", ["images", "labels"])
def test_a_data_folders_images_or_labels_given_as_data_names_the_folder_to_give(tmp_path, sub):
    # before: "DATA/images/labels: labels folder not found", which sends the user looking
    # for a labels folder inside images/
    root = make_folder(tmp_path / "d", n=2)
    _expect(root / sub, rf"labels folder not found \(DATA/labels/<stem>\.png\); {root / sub} "
                        rf"is a DATA folder's {sub}/: give {root} as DATA$", "labels")


def test_a_synth_tomogram_folder_given_as_data_names_its_train_folder(tmp_path):
    # before: "labels folder not found" alone, for the folder `nwwatch synth tomogram OUT`
    # writes, whose DATA folder is OUT/train
    root = make_folder(tmp_path / "out" / "train", n=2)
    out = root.parent
    _expect(out, rf"labels folder not found \(DATA/labels/<stem>\.png\); {root} holds one: "
                 r"give it as DATA$", "labels")


def test_dataset_toml_classes_and_bad_keys(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    (root / "dataset.toml").write_text('kind = "insitu"\nclasses = ["bg", "wire", "drop"]\n')
    assert load_folder(root).class_names == ("bg", "wire", "drop")
    (root / "dataset.toml").write_text('clases = ["a", "b"]\n')
    # the keys it knows are listed (before: "unknown keys ['clases']" alone)
    _expect(root, r"unknown keys \['clases'\] \(known: classes, kind, normalization_scope\)$",
            "dataset.toml")


def test_dataset_toml_is_read_as_the_service_reads_its_configuration(tmp_path):
    """One TOML reader: a byte-order mark (Windows editors write one) is accepted and a
    Latin-1 file is refused with the offending byte, whatever the system's locale."""
    root = make_folder(tmp_path / "d", n=2)
    text = 'kind = "insitu"\nclasses = ["bg", "wire", "drop"]\n'
    (root / "dataset.toml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_folder(root).class_names == ("bg", "wire", "drop")
    (root / "dataset.toml").write_bytes('# caf\u00e9\n'.encode("latin-1") + text.encode())
    _expect(root, r"not UTF-8 text: byte 0xe9 at offset 5$", "dataset.toml")


@pytest.mark.parametrize(("classes", "named"), [
    ('["background", "droplet", "nanowire"]', "name 'nanowire' as class 2"),
    ('["bg", "Droplet"]', "name 'Droplet' as class 1"),
])
def test_an_insitu_dataset_naming_its_classes_in_another_order_is_refused(tmp_path, classes,
                                                                          named):
    # before: the model trained with class 1 = droplet, and the service (which reads class 1
    # as the nanowire and 2 as the droplet) measured it without a word
    root = make_folder(tmp_path / "d", n=2)
    (root / "dataset.toml").write_text(f'kind = "insitu"\nclasses = {classes}\n')
    _expect(root, rf"classes \[.*\] {named}, but in-situ labels are read as 0 background, 1 "
                  rf"nanowire, 2 droplet whatever the names .*: renumber the labels",
            "dataset.toml")


def test_an_insitu_dataset_of_two_classes_is_not_trained(tmp_path):
    # before: it trained a model that measure, replay and the service cannot measure (no
    # droplet class 2: `measure --model` stopped with an IndexError)
    root = make_folder(tmp_path / "d", n=2)
    for label in (root / "labels").glob("*.png"):
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.where(values == 2, 255, values).astype(np.uint8))
    (root / "dataset.toml").write_text('kind = "insitu"\nclasses = ["background", "wire"]\n')
    _expect(root, r"classes \['background', 'wire'\]: an in-situ model needs 0 background, 1 "
                  r"nanowire, 2 droplet", "dataset.toml")


def test_an_insitu_dataset_of_four_classes_is_not_trained(tmp_path):
    # before: it trained a model the service loaded and then failed every frame with
    root = make_folder(tmp_path / "d", n=2)
    (root / "dataset.toml").write_text(
        'kind = "insitu"\nclasses = ["background", "nanowire", "droplet", "carbon"]\n')
    _expect(root, r"an in-situ model has three classes, 0 background, 1 nanowire, 2 droplet",
            "dataset.toml")


@pytest.mark.parametrize("classes", ['["pore", "solid", "metal"]', '["solid"]'])
def test_a_tomogram_dataset_names_two_classes(tmp_path, classes):
    # The tomogram workflow is binary (0 pore or vacuum, 1 solid): a third class named in
    # dataset.toml trained a 3-class model whose third class every mask then dropped.
    root = make_folder(tmp_path / "d", n=2)
    (root / "dataset.toml").write_text(f'kind = "tomogram"\nclasses = {classes}\n')
    _expect(root, "classes: a tomogram has two classes", "dataset.toml")


def test_split_is_seeded_and_disjoint():
    stems = [f"s{k}" for k in range(20)]
    a, b = make_split(stems, 0.25, seed=3), make_split(stems, 0.25, seed=3)
    assert a == b and len(a.val) == 5 and not set(a.train) & set(a.val)
    assert make_split(stems, 0.25, seed=4) != a
    assert make_split(["only"], 0.5, seed=0).train == ("only",)


def _volume(tmp_path, depth=6):
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 10, (depth, 32, 40)).astype(np.float32)
    volume[:, :, 20:] += 80
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, volume)
    labels = np.full((32, 40), 255, np.uint8)
    labels[4:8, 4:8] = 0
    labels[4:8, 30:34] = 1
    label_path = tmp_path / "slice.png"
    cv2.imwrite(str(label_path), labels)
    return path, label_path, volume


def test_volume_slice_normalised_with_the_volume_range(tmp_path):
    path, label_path, volume = _volume(tmp_path)
    data = load_volume_slice(path, 2, label_path)
    assert data.kind == "tomogram" and data.normalization_scope == "volume"
    assert len(data.unlabeled) == 5
    expected = normalize_image(volume[2], intensity_range(volume))
    np.testing.assert_array_equal(data.labeled[0].image, expected)


def test_volume_slice_errors(tmp_path):
    path, label_path, _ = _volume(tmp_path)
    with pytest.raises(DatasetLayoutError, match="slice index 6 out of range"):
        load_volume_slice(path, 6, label_path)
    wrong = tmp_path / "wrong.png"
    cv2.imwrite(str(wrong), np.zeros((31, 40), np.uint8))
    with pytest.raises(DatasetLayoutError, match="shape"):
        load_volume_slice(path, 1, wrong)
    one_class = tmp_path / "one.png"
    labels = np.full((32, 40), 255, np.uint8)
    labels[:3, :3] = 1
    cv2.imwrite(str(one_class), labels)
    with pytest.raises(DatasetLayoutError, match=r"no labeled pixel of class 0 \(pore\)"):
        load_volume_slice(path, 1, one_class)
    assert "0/255 mask" not in _error(load_volume_slice, path, 1, one_class)


def _error(function, *args) -> str:
    with pytest.raises(DatasetLayoutError) as info:
        function(*args)
    return str(info.value)


def test_a_0_255_mask_given_as_volume_labels_is_named_as_such(tmp_path):
    """A binary mask exported as 0/255 (255 = solid) is all "unlabeled" but its 0s: training
    stopped with "no labeled pixel of class 1 (solid); label a few pixels of every class" for
    a file with thousands of solid pixels, and did not say why."""
    path, _, _ = _volume(tmp_path)
    mask = tmp_path / "mask.png"
    labels = np.zeros((32, 40), np.uint8)
    labels[10:20, 10:30] = 255
    cv2.imwrite(str(mask), labels)
    message = _error(load_volume_slice, path, 1, mask)
    assert "no labeled pixel of class 1 (solid)" in message
    assert "holds only 0 and 255 (unlabeled): a 0/255 mask?" in message
    assert "0 pore, 1 solid, 255 unlabeled" in message
    cv2.imwrite(str(mask), np.full((32, 40), 255, np.uint8))  # nothing labeled at all
    assert _error(load_volume_slice, path, 1, mask).endswith(
        "label a few pixels of every class (every pixel is 255, unlabeled)")


def test_geometric_augmentation_moves_image_and_label_together():
    rng = np.random.default_rng(1)
    label = (np.arange(64).reshape(8, 8) % 3).astype(np.uint8)
    image = label.astype(np.float32) / 2
    for _ in range(10):
        img, lab = geometric(image, label, rng, AugmentConfig())
        np.testing.assert_array_equal(img * 2, lab)


def test_intensity_augmentation_keeps_range_and_label():
    rng = np.random.default_rng(2)
    image = np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16)
    label = np.zeros((16, 16), np.uint8)
    for _ in range(10):
        img, lab = augment(image, label, rng)
        assert img.dtype == np.float32 and img.min() >= -1 and img.max() <= 1
        assert lab.shape == (16, 16)


def test_crop_keeps_a_labeled_pixel_and_pads_small_images():
    rng = np.random.default_rng(3)
    image = np.zeros((100, 100), np.float32)
    label = np.full((100, 100), 255, np.uint8)
    label[90, 5] = 1
    for _ in range(20):
        _, lab = random_crop(image, label, 16, rng)
        assert lab.shape == (16, 16) and (lab == 1).sum() == 1
    img, lab = random_crop(np.zeros((10, 12), np.float32), np.zeros((10, 12), np.uint8), 16, rng)
    assert img.shape == (16, 16) and (lab == 255).sum() == 16 * 16 - 120


def test_volume_slices_are_read_as_the_service_reads_tomograms(tmp_path):
    # One reader for tomograms (nwwatch.io.read_volume): voxels whose x and y sizes differ
    # are a volume the service segments, so training takes them too; a time series of
    # volumes the service refuses is refused here with the service's reason.
    _, label_path, volume = _volume(tmp_path)
    voxels = write_volume_tiff(tmp_path / "aniso.tif", volume, voxel_size_nm=(3.5, 1.25, 1.2))
    data = load_volume_slice(voxels, 2, label_path)
    expected = normalize_image(volume[2], intensity_range(volume))
    np.testing.assert_array_equal(data.labeled[0].image, expected)
    series = tmp_path / "tz.tif"
    tifffile.imwrite(series, np.stack([volume, volume]), imagej=True,
                     metadata={"axes": "TZYX"})
    with pytest.raises(DatasetLayoutError, match="a volume has one axis besides Y and X") as err:
        load_volume_slice(series, 2, label_path)
    assert err.value.path == series


def test_a_2d_image_or_a_blank_volume_is_refused_as_the_service_refuses_it(tmp_path):
    # Training and the service share nwwatch.io.check_tomogram: no model is trained on a
    # volume whose every slice looks alike (it would pick a sign and a cut at random).
    path, label_path, volume = _volume(tmp_path)
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, volume[2])
    with pytest.raises(DatasetLayoutError, match="2-D image") as err:
        load_volume_slice(single, 0, label_path)
    assert err.value.path == single
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.zeros_like(volume))
    with pytest.raises(DatasetLayoutError, match="blank volume") as err:
        load_volume_slice(blank, 2, label_path)
    assert err.value.path == blank


def test_a_label_on_a_voxel_without_data_is_refused(tmp_path):
    # Normalisation gives NaN a grey that is not its own; labeled solid
    # there taught the model that grey is solid (the row only said threshold_disagreement,
    # after the fact).
    path, label_path, volume = _volume(tmp_path)
    volume[2, 4:6, 30:34] = np.nan  # under 8 of the 16 labeled solid pixels of slice 2
    volume[3, 20:24, 10:14] = np.nan  # no data where nothing is labeled: no reason to refuse
    tifffile.imwrite(path, volume)
    with pytest.raises(DatasetLayoutError, match="8 labeled pixels lie where slice 2") as err:
        load_volume_slice(path, 2, label_path)
    assert err.value.path == label_path and "mark them 255" in str(err.value)
    assert len(load_volume_slice(path, 3, label_path).labeled) == 1


def test_tomogram_folder_slices_normalised_with_their_volume_range(tmp_path):
    # The runtime normalises a tomogram's slices with the whole volume's range
    # (nwwatch.volume.segment); a labeled slice of a "volume" DATA folder must be too, not
    # with its own range (the train/serve skew of `nwwatch train OUT/train`).
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    volume = tifffile.imread(tmp_path / "syn" / "volume.tif")
    data = load_folder(root)
    assert data.normalization_scope == "volume"
    (item,) = data.labeled
    z = int(item.stem.split("_")[1])
    np.testing.assert_array_equal(item.image, normalize_image(volume[z], intensity_range(volume)))
    assert intensity_range(volume[z]) != intensity_range(volume)  # the test can tell them apart


def test_tomogram_folder_slice_without_its_volume_is_an_error(tmp_path):
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    (root / "unlabeled" / "volume.tif").unlink()
    with pytest.raises(DatasetLayoutError, match="no file in .*unlabeled holds this image"):
        load_folder(root)
    (root / "dataset.toml").write_text('kind = "tomogram"\nnormalization_scope = "image"\n')
    assert len(load_folder(root).labeled) == 1


def test_a_tomogram_folder_without_a_labeled_class_is_refused_as_train_volume_refuses_it(
        tmp_path):
    # `nwwatch train --volume` stops on a class labeled nowhere; the same labels in a
    # tomogram DATA folder (`nwwatch train OUT/train`) trained an all-solid model with a
    # warning ("only 0 labeled pore pixels").
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "t", size=24, labeled_fraction=0.2, seed=0)
    root = tmp_path / "t" / "train"
    (label_path,) = (root / "labels").iterdir()
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    assert load_folder(root).class_names == ("pore", "solid")
    label[label == 0] = 255
    cv2.imwrite(str(label_path), label)
    with pytest.raises(DatasetLayoutError, match=r"no labeled pixel of class 0 \(pore\)") as info:
        load_folder(root)
    assert info.value.path == label_path
