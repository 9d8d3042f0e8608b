"""The one label-image reader (:func:`nwwatch.io.dataset.read_label_image`) and the callers that
read label PNGs through it: a missing or corrupt label file is an error naming the file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from grey_png import grey_png

from nwwatch.classes import UNLABELED
from nwwatch.demo import write_montage
from nwwatch.io.dataset import DatasetLayoutError, read_label_image
from nwwatch.synth import generate_insitu
from training.synth_data import relabel_folder


def test_a_label_png_reads_as_uint8_class_ids(tmp_path):
    label = np.zeros((8, 9), np.uint8)
    label[2:4, 3:5] = 2
    label[0, 0] = UNLABELED
    cv2.imwrite(str(tmp_path / "a.png"), label)
    read = read_label_image(tmp_path / "a.png", 3)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label)


@pytest.mark.parametrize(("content", "reason"), [
    (None, "file not found"),
    (b"not a png", "cannot be read as a PNG image"),
    (np.full((4, 4), 3, np.uint8), "out of range"),
    (np.zeros((4, 4), np.uint16) + 300, "out of range"),
    (np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8),
                np.zeros((4, 4), np.uint8)]), "colour image"),
])
def test_a_bad_label_file_is_refused_naming_it(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        cv2.imwrite(str(path), content)
    with pytest.raises(DatasetLayoutError, match=reason) as info:
        read_label_image(path, 3)
    assert info.value.path == path
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ""])
def test_a_label_file_of_another_format_says_which_formats(tmp_path, suffix):
    # A JPEG's message was "not a TIFF file (no TIFF or BigTIFF header)".
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(b"\xff\xd8\xff\xe0 a JPEG, say")
    with pytest.raises(DatasetLayoutError, match="labels are read from PNG or TIFF") as info:
        read_label_image(path, 2)
    assert info.value.path == path


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    generate_insitu(folder, 2, seed=1, size=64)
    return folder


def _without_labels(synth_folder, folder):
    """``folder``: ``synth_folder``'s frames and truth table, an empty labels folder."""
    (folder / "labels").mkdir(parents=True)
    for item in synth_folder.iterdir():
        if item.name != "labels":
            (folder / item.name).symlink_to(item)
    return folder


def test_relabel_folder_names_a_corrupt_label(synth_folder, tmp_path):
    bad = _without_labels(synth_folder, tmp_path / "bad")
    (bad / "labels" / "frame_00000.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetLayoutError, match="cannot be read") as info:
        relabel_folder(bad, tmp_path / "out")
    assert info.value.path == bad / "labels" / "frame_00000.png"


def test_relabel_folder_names_a_missing_label(synth_folder, tmp_path):
    bad = _without_labels(synth_folder, tmp_path / "bad")
    with pytest.raises(DatasetLayoutError, match="file not found") as info:
        relabel_folder(bad, tmp_path / "out")
    assert info.value.path == bad / "labels" / "frame_00000.png"


def test_the_demo_montage_names_a_missing_label(synth_folder, tmp_path):
    video = _without_labels(synth_folder, tmp_path / "video")
    with pytest.raises(DatasetLayoutError, match="file not found") as info:
        write_montage(video, tmp_path / "tomogram", tmp_path / "montage.png", n_frames=2)
    assert info.value.path == video / "labels" / "frame_00000.png"


def _palette_png(path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """An indexed-colour PNG as label exports write it (PASCAL VOC, CVAT segmentation masks)."""
    from PIL import Image

    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.save(path)


#: PASCAL VOC's colours: 0 black, 1 dark red, 2 dark green; 255 (void) cream.
VOC = [(0, 0, 0), (128, 0, 0), (0, 128, 0)] + [(0, 0, 0)] * 252 + [(224, 224, 192)]


def test_a_palette_label_png_reads_as_its_class_ids(tmp_path):
    """A VOC-style mask (class ids as palette indices, drawn in colours) was refused as a
    colour image; its indices are the class ids, 255 the unlabeled pixels."""
    label = np.zeros((12, 10), np.uint8)
    label[2:6, 3:7] = 1
    label[6:10, 2:8] = 2
    label[0, :] = UNLABELED
    VOC[3] = (1, 2, 3)  # an unused entry of another colour does not matter
    _palette_png(tmp_path / "voc.png", label, VOC)
    read = read_label_image(tmp_path / "voc.png", 3)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label)
    # measure reads it the same way (auto: labels)
    from click.testing import CliRunner

    from nwwatch.measure.cli import measure

    out = CliRunner().invoke(measure, [str(tmp_path / "voc.png"), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert "colour" not in out.output and "unlabeled" in out.output, out.output


def test_a_grey_palette_png_reads_as_its_grey_values(tmp_path):
    grey = [(v, v, v) for v in range(256)][::-1]  # index i drawn as grey 255 - i
    _palette_png(tmp_path / "g.png", np.array([[0, 1], [2, 2]]), grey)
    np.testing.assert_array_equal(read_label_image(tmp_path / "g.png", 256),
                                  [[255, 254], [253, 253]])


def test_palette_indices_are_read_even_where_entries_share_a_colour(tmp_path):
    """Exports pad their palettes (here with black, index 0's colour): the indices are read,
    not recovered from the colours."""
    same = [(0, 0, 0), (200, 10, 10), (200, 10, 10)]
    _palette_png(tmp_path / "dup.png", np.array([[0, 1], [2, 0]]), same)
    np.testing.assert_array_equal(read_label_image(tmp_path / "dup.png", 3), [[0, 1], [2, 0]])


def test_a_colour_tiff_label_is_told_to_renumber_its_colours(tmp_path):
    """An RGB TIFF in labels/ got the frame reader's advice (a picture saved as displayed:
    give the acquisition software's own file); a label mask's is to renumber its colours."""
    import tifffile

    label = np.zeros((12, 10), np.uint8)
    label[2:6, 3:7] = 1
    label[6:10, 2:8] = 2
    colours = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", colours[label], photometric="rgb")
    with pytest.raises(DatasetLayoutError) as info:
        read_label_image(tmp_path / "rgb.tif", 3)
    assert info.value.path.name == "rgb.tif"
    assert info.value.reason.startswith("3 channels per pixel (shape (12, 10, 3)) holding 3 "
                                        "colours, (0, 0, 0), (0, 200, 0), (200, 0, 0): a colour "
                                        "label mask")
    assert "renumber its colours to class ids" in info.value.reason
    assert "acquisition software" not in info.value.reason


def test_a_colour_picture_is_told_apart_from_a_mask_without_sorting_all_its_pixels(
        tmp_path, monkeypatch):
    # measure --read-as auto asks of every colour TIFF whether it is a label mask: each of
    # its pixels was packed to uint64 and all sorted by np.unique (seconds and ~1 GB on a
    # 4096 x 4096 RGB picture) before the answer, no. A sample of its pixels says so.
    import tifffile

    from nwwatch.io.dataset import colour_label_mask_reason

    rows, cols = np.mgrid[0:1024, 0:1024]
    picture = np.stack([rows % 256, cols % 256, (rows + cols) % 256], -1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "picture.tif", picture, photometric="rgb")
    sorted_sizes = []
    unique = np.unique

    def counted(values, *args, **kwargs):
        sorted_sizes.append(np.asarray(values).shape[0])
        return unique(values, *args, **kwargs)

    monkeypatch.setattr(np, "unique", counted)
    assert colour_label_mask_reason(tmp_path / "picture.tif") is None
    assert sorted_sizes and max(sorted_sizes) <= 1024 * 1024 // 4
    reason = colour_label_mask_reason(tmp_path / "picture.tif", as_labels=True)
    assert reason.startswith("3 channels per pixel (shape (1024, 1024, 3)) holding more than "
                             "8 colours: a colour label mask")
    assert max(sorted_sizes) <= 1024 * 1024 // 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_colour_mask_lists_every_colour_a_sample_of_its_pixels_misses(tmp_path, dtype):
    # the sample that tells a picture from a mask skips most pixels: a mask's colours are
    # counted on all of them (a stray colour in one pixel is one of its colours)
    import tifffile

    from nwwatch.io.dataset import colour_label_mask_reason

    label = np.zeros((1024, 1024), np.uint8)
    label[300:700, 200:800] = 1
    label[500:900, 400:600] = 2
    label[1, 1] = 3
    scale = 1 if dtype == np.uint8 else 257
    colours = (np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [7, 8, 9]]) * scale).astype(dtype)
    tifffile.imwrite(tmp_path / "mask.tif", colours[label], photometric="rgb")
    listed = ", ".join(str(tuple(int(v) for v in c)) for c in sorted(map(tuple, colours)))
    for as_labels in (None, True):
        reason = colour_label_mask_reason(tmp_path / "mask.tif", as_labels)
        assert reason.startswith("3 channels per pixel (shape (1024, 1024, 3)) holding 4 "
                                 f"colours, {listed}: a colour label mask")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_a_label_tiff_of_another_pixel_type_is_told_to_be_uint8(tmp_path, dtype):
    # napari saves a labels layer as an int32 or int64 TIFF: the image reader's advice
    # ("save it as float32") led to a file refused next as "not integer class ids".
    import tifffile

    label = np.zeros((6, 7), dtype)
    label[1:3, 2:4] = 1
    tifffile.imwrite(tmp_path / "napari.tif", label)
    with pytest.raises(DatasetLayoutError) as info:
        read_label_image(tmp_path / "napari.tif", 2)
    assert info.value.path.name == "napari.tif"
    assert "save the labels as uint8" in info.value.reason
    assert "float32" not in info.value.reason.split("save")[-1]


def test_a_grey_image_given_as_labels_is_named_as_one(tmp_path):
    # The slice's own image (train/images/slice_032.tif) given to --labels was told to be
    # saved with labels.astype('uint8'), which turns grey levels into no class ids.
    import tifffile

    image = np.linspace(-0.6, 1.3, 42, dtype=np.float32).reshape(6, 7)
    tifffile.imwrite(tmp_path / "slice_032.tif", image)
    with pytest.raises(DatasetLayoutError) as info:
        read_label_image(tmp_path / "slice_032.tif", 2)
    assert info.value.reason == ("labels must be integer class ids, got float32: it holds "
                                 "values from -0.6 to 1.3, not whole numbers: an image rather "
                                 "than its labels? Labels hold class ids 0..1, 255 unlabeled, "
                                 "as uint8")


def test_labels_that_count_classes_from_one_name_the_convention(tmp_path):
    # napari's and ilastik's labels leave 0 unlabeled and count classes from 1: a tomogram's
    # 0/1/2 was "label values [2] out of range", which did not say what to change.
    label = np.zeros((6, 6), np.uint8)
    label[:2, :2] = 1
    label[4:, 4:] = 2
    cv2.imwrite(str(tmp_path / "napari.png"), label)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "napari.png", 2)
    assert "0 unlabeled" in info.value.reason and "numpy.where(labels == 0, 255, labels - 1)" \
        in info.value.reason
    # with 255 in the file the ids are not shifted: only the plain range error
    label[0, 5] = UNLABELED
    cv2.imwrite(str(tmp_path / "mixed.png"), label)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "mixed.png", 2)
    assert "napari" not in info.value.reason


def test_a_few_pixels_of_a_wrong_value_are_not_told_to_renumber_the_image(tmp_path):
    # before: 0/1/2 with a brush stroke of 3 (or a JPEG's residue) was told "labels with 0
    # unlabeled and classes counted from 1 (napari, ilastik)? ... numpy.where(labels == 0,
    # 255, labels - 1)", which turns the background unlabeled and the wire background
    label = np.zeros((64, 64), np.uint8)
    label[32:, 24:40] = 1
    label[8:32, 16:48] = 2
    label[40:44, 2:6] = 3  # 16 px of 4096: under half a percent
    cv2.imwrite(str(tmp_path / "stroke.png"), label)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "stroke.png", 3)
    assert "only 16 px of 4096 hold them: painted in by mistake" in info.value.reason
    assert "napari" not in info.value.reason and "renumber" not in info.value.reason
    # as a class of its own (a share of the image) it still reads as another numbering
    label[40:60, 2:22] = 3
    cv2.imwrite(str(tmp_path / "napari.png"), label)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "napari.png", 3)
    assert "napari" in info.value.reason


def test_ids_counted_from_1_with_a_small_droplet_are_not_a_stray_stroke(tmp_path):
    # before: a droplet under half a percent of the frame made 1/2/3 labels "painted in by
    # mistake ... give those pixels their class (or 255)"; done, the label was accepted with
    # background read as wire, and trained on
    label = np.ones((64, 64), np.uint8)
    label[32:, 24:40] = 2
    label[28:32, 30:34] = 3  # 16 px of 4096
    cv2.imwrite(str(tmp_path / "from1.png"), label)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "from1.png", 3)
    assert "painted in by mistake" not in info.value.reason
    assert "renumber them to 0..2" in info.value.reason
    # scribbles (classes painted on 255, no 0 anywhere) with a stray stroke stay a stray
    scribble = np.full((64, 64), UNLABELED, np.uint8)
    scribble[2:12, 2:22], scribble[30:40, 30:50] = 1, 2
    scribble[50, 50:55] = 7
    cv2.imwrite(str(tmp_path / "scribble.png"), scribble)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "scribble.png", 3)
    assert "painted in by mistake" in info.value.reason


@pytest.mark.parametrize("values", [(0, 127, 255), (1, 2, 3)])
def test_another_tools_grey_levels_or_ids_are_told_to_be_renumbered(tmp_path, values):
    # before: only "label values [127] out of range" for a 0/127/255 grey mask, whose
    # droplet (255) was silently taken for unlabeled
    classes = np.zeros((6, 6), np.uint8)
    classes[:2, :2] = 1
    classes[4:, 4:] = 2
    cv2.imwrite(str(tmp_path / "grey.png"), np.array(values, np.uint8)[classes])
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "grey.png", 3)
    assert "renumber them to 0..2" in info.value.reason
    assert "'Masks from other tools'" in info.value.reason
    assert ("255 reads as unlabeled" in info.value.reason) == (255 in values)


def test_a_labels_volume_and_an_empty_file_say_what_they_are(tmp_path):
    import tifffile

    stack = tmp_path / "labels.tif"
    tifffile.imwrite(stack, np.full((5, 6, 6), UNLABELED, np.uint8))
    with pytest.raises(DatasetLayoutError, match="5 pages") as info:
        read_label_image(stack, 2)
    assert "labels volume" in info.value.reason and "labels[Z]" in info.value.reason
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(DatasetLayoutError, match="empty file") as info:
        read_label_image(empty, 2)
    assert info.value.path == empty


def test_a_label_tiff_with_non_square_pixel_calibration_is_read(tmp_path):
    # Fiji saves a label image with its slice's calibration; a tomogram may have x != y
    # (read_volume takes it), and its labels were refused with "measurements need square
    # pixels", though nothing is measured on labels.
    import tifffile

    label = np.full((6, 8), UNLABELED, np.uint8)
    label[:2, :2], label[4:, 5:] = 0, 1
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, label, imagej=True, resolution=(1 / 0.5, 1 / 0.7),
                     metadata={"unit": "nm"})
    np.testing.assert_array_equal(read_label_image(path, 2), label)


def test_a_mask_like_label_tiff_with_non_square_pixel_calibration_is_found(tmp_path):
    # The 0/255 mask check reads labels with the label reader: a TIFF mask saved with its
    # slice's x != y calibration is found like any other, not passed over as unreadable.
    import tifffile

    from nwwatch.io.dataset import mask_like_labels

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = np.random.default_rng(0).random((6, 8)).astype(np.float32)
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = UNLABELED
    tifffile.imwrite(tmp_path / "labels" / "a.tif", mask, imagej=True,
                     resolution=(1 / 0.5, 1 / 0.7), metadata={"unit": "nm"})
    assert mask_like_labels(tmp_path) == [tmp_path / "labels" / "a.tif"]


def test_naparis_labels_layer_as_saved_is_told_the_whole_conversion(tmp_path):
    """napari saves its Labels layer as an int32 volume, 0 unlabeled and classes from 1.
    Given as it is, the refusal names the conversion and the page, so that one pass of the
    advice gives a label image that is read (before: "labels.astype('uint8')", then a
    labels volume, then the 0/1/2 convention, one refusal at a time)."""
    import tifffile

    layer = np.zeros((5, 6, 7), np.int32)
    layer[3, :2, :2] = 1  # pore
    layer[3, 4:, 4:] = 2  # solid
    tifffile.imwrite(tmp_path / "Labels.tif", layer)
    with pytest.raises(DatasetLayoutError) as info:
        read_label_image(tmp_path / "Labels.tif", 2)
    reason = info.value.reason
    assert info.value.path.name == "Labels.tif"
    assert "numpy.where(labels == 0, 255, labels - 1)" in reason
    assert "labels[Z]" in reason and "5 pages" in reason
    labels = tifffile.imread(tmp_path / "Labels.tif")[3]
    converted = np.where(labels == 0, 255, labels - 1).astype("uint8")
    tifffile.imwrite(tmp_path / "slice.tif", converted)
    got = read_label_image(tmp_path / "slice.tif", 2)
    assert got[0, 0] == 0 and got[5, 6] == 1 and got[2, 3] == UNLABELED


def test_a_linearly_resized_insitu_label_is_refused_naming_the_interpolation(tmp_path):
    label = np.zeros((60, 60), np.uint8)
    label[40:, :] = 1  # wire
    cv2.circle(label, (30, 40), 15, 2, -1)  # droplet on it
    label[40:, :] = np.where(label[40:, :] == 2, 1, label[40:, :])
    cv2.imwrite(str(tmp_path / "nearest.png"), cv2.resize(label, (120, 120),
                                                          interpolation=cv2.INTER_NEAREST))
    cv2.imwrite(str(tmp_path / "linear.png"), cv2.resize(label, (120, 120),
                                                         interpolation=cv2.INTER_LINEAR))
    assert read_label_image(tmp_path / "nearest.png", 3).shape == (120, 120)
    with pytest.raises(DatasetLayoutError, match="nearest-neighbour") as caught:
        read_label_image(tmp_path / "linear.png", 3)
    assert caught.value.path == tmp_path / "linear.png"


def test_a_label_named_with_a_suffix_is_named_and_not_paired(tmp_path):
    from nwwatch.io.dataset import pair_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "img01.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(tmp_path / "labels" / "img01_mask.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetLayoutError, match="img01_mask.png is there: name each label "
                                                 "file after its image"):
        pair_folder(tmp_path)


def test_a_colour_label_mask_is_told_to_be_renumbered(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[4:, :] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    with pytest.raises(DatasetLayoutError, match="colour image.*Masks from other tools"):
        read_label_image(tmp_path / "rgb.png", 3)


def test_a_label_of_another_size_than_its_image_says_how_to_resize_it(tmp_path):
    from nwwatch.io.dataset import read_pair

    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((16, 16), np.uint8))
    cv2.imwrite(str(tmp_path / "label.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"label shape \(8, 8\) != image shape "
                                                 r"\(16, 16\) of img.png: .*nearest-neighbour"):
        read_pair(tmp_path / "img.png", tmp_path / "label.png", 3)


def test_a_one_bit_png_of_a_binary_mask_reads_as_classes_0_and_1(tmp_path):
    """A binary mask saved as a 1-bit PNG (Pillow's mode "1", Fiji's binary) holds 0 and 1,
    which OpenCV decodes as 0 and 255: its foreground read as unlabeled, and the run asked
    only whether it was a 0/255 mask."""
    from PIL import Image

    from nwwatch.io.dataset import read_label_image

    mask = np.zeros((12, 16), bool)
    mask[3:9, 4:12] = True
    path = tmp_path / "slice.png"
    Image.fromarray(mask).save(path)  # mode "1": bit depth 1
    labels = read_label_image(path, num_classes=2)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, mask.astype(np.uint8))
    # an 8-bit PNG of 0 and 255 is still read as stored (255: unlabeled)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    assert set(np.unique(read_label_image(path, num_classes=2)).tolist()) == {0, 255}


@pytest.mark.parametrize("bits, num_classes", [(2, 3), (4, 5)])
def test_a_two_or_four_bit_png_of_class_ids_reads_as_those_ids(tmp_path, bits, num_classes):
    # a fully labeled mask of classes 0..2 that an optimiser stored at 2 bits was refused
    # with 'label values [85, 170] out of range' (OpenCV scales the values to 0..255)
    from nwwatch.io.dataset import read_label_image

    ids = np.zeros((12, 16), np.uint8)
    ids[:, 10:] = 2  # droplet beside the background, a wire apart
    ids[2:5, 2:5] = 1
    for c in range(3, num_classes):
        ids[6:9, 2 * c - 4:2 * c - 3] = c
    path = tmp_path / "slice.png"
    grey_png(path, ids, bits)
    np.testing.assert_array_equal(read_label_image(path, num_classes=num_classes), ids)
    grey_png(path, ids % 2, 1)  # and 1 bit still gives 0 and 1
    np.testing.assert_array_equal(read_label_image(path, num_classes=num_classes), ids % 2)


def test_a_damaged_png_gives_the_reader_s_refusal_alone_on_stderr(tmp_path):
    # before: OpenCV's own "[ERROR:0@...] global grfmt_png.cpp ... IHDR chunk shall be
    # first" line went to stderr before the refusal that names the file
    import subprocess
    import sys

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    done = subprocess.run([sys.executable, "-m", "nwwatch", "measure", str(bad), "--out",
                           str(tmp_path / "a.parquet")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert f"skipped {bad}: cannot be read as a PNG image" in done.stderr
    assert "grfmt" not in done.stderr and "[ERROR" not in done.stderr, done.stderr


def _insitu_label(size: int = 64) -> np.ndarray:
    """0 background, 1 wire, 2 droplet: a label image of the in-situ numbering."""
    label = np.zeros((size, size), np.uint8)
    label[size // 2:, size // 3:size // 2] = 1
    label[size // 8:size // 2, size // 4:3 * size // 4] = 2
    return label


def _data_labels(tmp_path, labels: dict[str, np.ndarray]):
    folder = tmp_path / "DATA" / "labels"
    folder.mkdir(parents=True)
    for stem, label in labels.items():
        cv2.imwrite(str(folder / f"{stem}.png"), label)
    return folder


def test_an_extra_class_beside_labels_numbered_from_0_is_not_told_to_shift(tmp_path):
    # before: contamination painted as a 4th class (3) in one image of a folder of 0/1/2
    # labels was told napari's conversion numpy.where(labels == 0, 255, labels - 1), which
    # made background unlabeled, wire background, droplet wire, and trained without a word
    contaminated = _insitu_label()
    contaminated[50:60, 2:14] = 3
    folder = _data_labels(tmp_path, {"frame_00000": contaminated,
                                     "frame_00001": _insitu_label(),
                                     "frame_00002": _insitu_label()})
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(folder / "frame_00000.png", 3)
    reason = info.value.reason
    assert "labels - 1" not in reason and "napari" not in reason
    assert "numpy.where(labels == 3, 0, labels)" in reason and "0 background" in reason
    assert "frame_00001.png" in reason and "do not shift" in reason


def test_an_extra_class_alone_is_offered_before_the_counted_from_1_conversion(tmp_path):
    contaminated = _insitu_label()
    contaminated[50:60, 2:14] = 3
    cv2.imwrite(str(tmp_path / "frame.png"), contaminated)
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(tmp_path / "frame.png", 3)
    reason = info.value.reason
    merge = "numpy.where(labels == 3, 0, labels)"
    shift = "numpy.where(labels == 0, 255, labels - 1)"
    assert merge in reason and shift in reason
    assert reason.index(merge) < reason.index(shift)


def test_a_folder_of_ids_counted_from_1_keeps_the_conversion(tmp_path):
    # every label 1 background, 2 wire, 3 droplet with 0 unlabeled (napari, ilastik)
    from_1 = _insitu_label() + 1
    from_1[:4] = 0
    folder = _data_labels(tmp_path, {f"frame_{k:05d}": from_1 for k in range(3)})
    with pytest.raises(DatasetLayoutError, match="out of range") as info:
        read_label_image(folder / "frame_00000.png", 3)
    reason = info.value.reason
    assert "counted from 1" in reason and "frame_00001.png" in reason
    assert "numpy.where(labels == 0, 255, labels - 1)" in reason
    assert "labels == 3, 0" not in reason
