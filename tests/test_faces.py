"""Faces drawn back into the cartoon (vidtoon/faces.py) and the detector that finds them (networks/mtcnn.py)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mediagen import face_image, make_video
from vidtoon.compare import _TRANSFORMS, display_transform
from vidtoon.faces import (WEIGHTS, Face, FaceDrawing, FaceTrack, between, detect_faces, draw_faces,
                           face_interval, load_detector, min_face, video_faces, with_missed, STILL, VIDEO)
from vidtoon.networks.mtcnn import MTCNN, _nms

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"


def _centre(box: tuple[float, ...]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# ---- the detector ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [40, 100])
def test_detector_finds_a_drawn_face_where_it_is(size: int) -> None:
    img = face_image(320, 240, size, center=(200, 120))
    faces = detect_faces(img)
    assert len(faces) == 1
    cx, cy = _centre(faces[0].box)
    assert abs(cx - 200) < 0.15 * size and abs(cy - 120) < 0.3 * size
    assert 0.7 * size < faces[0].box[2] - faces[0].box[0] < 1.6 * size


def test_stills_are_searched_for_smaller_faces_than_video() -> None:
    big = face_image(2400, 1800, 40, center=(1200, 900))  # a 40 px face in a 4-megapixel photo
    assert detect_faces(big) == []  # video: faces from 1/24 of the shorter side (75 px) up
    assert len(detect_faces(big, fraction=STILL)) == 1  # stills: from 1/64 (28 px)
    assert FaceDrawing(_Identity()).detect.keywords == {"fraction": STILL}  # `vidtoon image`
    assert FaceDrawing(_Identity(), 3).detect.keywords == {"fraction": VIDEO}  # `vidtoon live`


def test_detector_finds_nothing_without_a_face() -> None:
    y, x = np.mgrid[0:240, 0:320]
    gradient = np.stack([x * 255 // 319, y * 255 // 239, (x + y) * 255 // 558], axis=-1).astype(np.uint8)
    assert detect_faces(gradient) == []
    assert load_detector().detect(np.zeros((8, 8, 3), np.uint8)).shape == (0, 5)  # smaller than a face


def _dihedral(a: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.rot90(b, k)) for b in (a, a.swapaxes(0, 1)) for k in range(4)]


@pytest.mark.parametrize("upright", sorted(_TRANSFORMS))
def test_faces_of_a_sideways_stored_frame_are_found_upright_and_boxed_where_stored(upright: str) -> None:
    shown = face_image(320, 240, 60, center=(200, 110))
    marker = np.zeros((240, 320, 1), np.uint8)
    marker[110, 200] = 1  # where the face's centre is, carried through the same turn as the frame
    turn = _TRANSFORMS[upright]
    stored, where = next((s, m) for s, m in zip(_dihedral(shown), _dihedral(marker))
                         if np.array_equal(turn(s), shown))
    faces = detect_faces(stored, upright)
    assert len(faces) == 1
    cy, cx = np.argwhere(where[..., 0])[0]
    fx, fy = _centre(faces[0].box)
    assert abs(fx - cx) < 15 and abs(fy - cy) < 20, (upright, faces, cx, cy)


def test_a_videos_display_matrix_turns_its_frames_for_the_detector() -> None:
    rotated = (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)  # FFmpeg's matrix of a 90-degree display rotation
    turn = _TRANSFORMS[display_transform(rotated)]
    shown = face_image(320, 240, 60, center=(200, 110))
    stored = next(s for s in _dihedral(shown) if np.array_equal(turn(s), shown))
    assert detect_faces(stored) == []  # as stored, sideways: MTCNN finds no face
    track = video_faces(Fraction(30), rotated)
    (_, faces), = track.push("frame", stored)
    assert len(faces) == 1


def test_detector_loads_the_published_state_dicts() -> None:
    state = torch.load(WEIGHTS, weights_only=True)
    assert set(state) >= {"pnet", "rnet", "onet"}
    net = MTCNN()
    for name in ("pnet", "rnet", "onet"):  # every published tensor has a home, and nothing is left untrained
        assert set(getattr(net, name).state_dict()) == set(state[name])


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.8], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.5], [2, 2, 6, 6, 0.95]], float)
    kept = _nms(boxes, 0.5)
    assert kept[:, 4].tolist() == [0.95, 0.9, 0.5]  # the small box inside overlaps little by union
    # over the smaller box, a box around the best one overlaps it fully: both larger boxes go
    assert _nms(boxes, 0.7, by_min=True)[:, 4].tolist() == [0.95, 0.5]
    assert _nms(boxes[:0], 0.5).shape == (0, 5)


def _facenet() -> object:
    mtcnn = pytest.importorskip("facenet_pytorch").MTCNN
    return mtcnn(keep_all=True, device="cpu", min_face_size=16)


def test_detector_agrees_with_facenet_pytorch() -> None:
    """Same weights as facenet-pytorch's MTCNN: the faces it is sure of are found in the same place."""
    from PIL import Image

    ref = _facenet()
    pictures = [face_image(300, 260, s) for s in (30, 60, 120)]
    if SHARED_PHOTOS.is_dir():  # people in the shared photos, when they are beside the checkout
        import cv2
        for name in ("0082_skimage_astronaut.jpg", "0059_coco_val2017_000000001000.jpg", "0003_kodak_kodim04.jpg"):
            if (SHARED_PHOTOS / name).is_file():
                pictures.append(cv2.cvtColor(cv2.imread(str(SHARED_PHOTOS / name)), cv2.COLOR_BGR2RGB))
    for rgb in pictures:
        boxes, probs = ref.detect(Image.fromarray(rgb))
        sure = [b for b, p in zip(boxes, probs) if p > 0.95] if boxes is not None else []
        mine = load_detector().detect(rgb)
        for b in sure:
            err = np.abs(mine[:, :4] - b).max(axis=1)
            assert err.min() < 0.1 * (b[2] - b[0]), (b, mine)


# ---- drawing ---------------------------------------------------------------------------------------------

def _flat(value: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


def test_draw_faces_adds_the_photos_detail_inside_the_face_only() -> None:
    photo = _flat(150)
    photo[58:62, 78:82] = 20  # a dark pupil at the face's centre
    photo[5:9, 5:9] = 20      # and a dark spot far outside it
    toon = _flat(150)
    out = draw_faces(photo, toon, [Face((60.0, 40.0, 100.0, 80.0))])
    assert out[60, 80].max() < 100      # the pupil is drawn
    assert (out[5:9, 5:9] == 150).all()  # outside the ellipse: the cartoon as it was
    assert (out[:, :20] == toon[:, :20]).all() and (out[:, 140:] == toon[:, 140:]).all()
    assert (toon == 150).all()           # the input is not modified


def test_draw_faces_weight_and_nothing_to_draw() -> None:
    photo, toon = _flat(10), _flat(200)
    assert draw_faces(photo, toon, []) is toon
    assert draw_faces(photo, toon, [Face((60.0, 40.0, 100.0, 80.0), 0.0)]) is toon
    half = draw_faces(photo, toon, [Face((60.0, 40.0, 90.0, 70.0), 0.5)])[55, 75].astype(int)
    full = draw_faces(photo, toon, [Face((60.0, 40.0, 90.0, 70.0), 1.0)])[55, 75].astype(int)
    # a small face takes 30% of the photo's colour (flat photo: no detail), half of that at weight 0.5
    assert np.allclose(full, 200 - 0.3 * 190, atol=1) and np.allclose(half, 200 - 0.15 * 190, atol=1)


def test_draw_faces_scales_with_the_looks_strength() -> None:
    photo, toon = _flat(10), _flat(200)
    face = [Face((60.0, 40.0, 90.0, 70.0))]
    assert draw_faces(photo, toon, face, strength=0.0) is toon  # --strength 0: the photo, nothing drawn back
    half = draw_faces(photo, toon, face, strength=0.5)[55, 75].astype(int)
    assert np.allclose(half, 200 - 0.15 * 190, atol=1)


def test_draw_faces_large_faces_keep_the_cartoons_colour() -> None:
    photo, toon = _flat(10, (400, 400)), _flat(200, (400, 400))
    out = draw_faces(photo, toon, [Face((140.0, 140.0, 260.0, 260.0))])
    assert (out == 200).all()  # 120 px wide: no colour from the photo, and a flat photo has no detail


def test_draw_faces_at_the_frame_edge() -> None:
    photo, toon = _flat(10, (50, 60)), _flat(200, (50, 60))
    out = draw_faces(photo, toon, [Face((-10.0, -10.0, 20.0, 20.0)), Face((50.0, 40.0, 80.0, 70.0))])
    assert out.shape == toon.shape and out[2, 2].max() < 200


# ---- video: detections every few frames, interpolated between -----------------------------------------

def test_between_moves_matched_faces_and_fades_the_others() -> None:
    a = [Face((0.0, 0.0, 10.0, 10.0)), Face((100.0, 100.0, 110.0, 110.0)), Face((300.0, 0.0, 310.0, 10.0))]
    # the first moved 14 px (1.4 widths), the second is gone, a third appeared, the last grew 3x in place
    b = [Face((14.0, 0.0, 24.0, 10.0)), Face((200.0, 0.0, 210.0, 10.0)), Face((290.0, -10.0, 320.0, 20.0))]
    mid = {f.box: f.weight for f in between(a, b, 0.25)}
    assert mid == {(3.5, 0.0, 13.5, 10.0): 1.0, (100.0, 100.0, 110.0, 110.0): 0.75, (300.0, 0.0, 310.0, 10.0): 0.75,
                   (200.0, 0.0, 210.0, 10.0): 0.25, (290.0, -10.0, 320.0, 20.0): 0.25}
    assert between([], [], 0.5) == []


def test_face_interval_and_min_face() -> None:
    assert face_interval(Fraction(30000, 1001)) == 10 and face_interval(Fraction(25)) == 8
    assert face_interval(Fraction(2)) == 1 and face_interval(None) == 8
    # the frames between two detections are held back: at most 256 MiB of them (120 fps 4K: every 10th)
    assert face_interval(Fraction(120), 3840 * 2160 * 3) == 10 and face_interval(Fraction(30), 1280 * 720 * 3) == 10
    assert min_face(240, 320) == 16 and min_face(720, 1280) == 30 and min_face(2160, 3840) == 90


def _marked(n: int) -> np.ndarray:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[0, 0, 0] = n
    return frame


def test_face_track_keeps_order_and_interpolates() -> None:
    seen: list[int] = []

    def detect(frame: np.ndarray) -> list[Face]:  # a face 40 px wide moving 10 px a frame
        n = int(frame[0, 0, 0])
        seen.append(n)
        return [Face((10.0 * n, 0.0, 10.0 * n + 40, 40.0))]

    track = FaceTrack(every=4, detect=detect)
    items = []
    for n in range(10):
        items.append(("video", n))
        if n % 3 == 0:
            items.append(("audio", n))
    out = []
    for got in track.run(items, lambda it: _marked(it[1]) if it[0] == "video" else None):
        assert sum(1 for it, _ in track._held if it[0] == "video") <= 4  # at most `every` frames held back
        out.append(got)
    assert [it for it, _ in out] == items  # the stream's order, audio included
    assert seen == [0, 4, 8]  # key frames only
    faces = {it[1]: f for it, f in out if it[0] == "video"}
    assert all(f is None for it, f in out if it[0] == "audio")
    for n in range(9):  # linear between key frames: exact for a face moving at constant speed
        assert faces[n] == [Face((10.0 * n, 0.0, 10.0 * n + 40, 40.0))]
    assert faces[9] == faces[8]  # after the last key frame: its faces held


class _Identity:
    name, device, in_flight = "identity", "cpu", 1

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return frames.copy()

    def submit(self, frames: np.ndarray):  # noqa: ANN201
        out = self.infer(frames)
        return lambda: out

    def close(self) -> None:
        self.closed = True


def test_face_drawing_engine_detects_every_nth_frame_and_delegates() -> None:
    calls: list[int] = []

    def detect(frame: np.ndarray) -> list[Face]:
        calls.append(int(frame[0, 0, 0]))
        return [Face((0.0, 0.0, 4.0, 4.0))]

    inner = _Identity()
    eng = FaceDrawing(inner, every=3, detect=detect)
    batch = np.stack([_marked(n) for n in range(5)])
    out = eng.infer(batch)
    out2 = eng.submit(np.stack([_marked(n) for n in range(5, 8)]))()
    assert calls == [0, 3, 6] and out.shape == batch.shape and out2.shape == (3, 4, 4, 3)
    assert eng.name == "identity" and eng.in_flight == 1
    eng.close()
    assert inner.closed


def test_face_drawing_of_stills_keeps_no_face_from_one_picture_to_the_next() -> None:
    found = [[Face((0.0, 0.0, 40.0, 40.0))], []]
    eng = FaceDrawing(_Identity(), detect=lambda frame: found.pop(0))
    photo = _flat(120, (60, 60))
    photo[18:22, 18:22] = 20  # a pupil in the first picture's face: drawn darker than the (identity) cartoon
    assert eng.infer(photo[None])[0, 20, 20].max() < 20 - 5
    # the second picture has no face: nothing of the first picture's face may be drawn on it
    second = _flat(120, (60, 60))
    second[18:22, 18:22] = 20
    assert (eng.infer(second[None])[0] == second).all() and found == []


def test_a_missed_face_fades_over_three_key_frames() -> None:
    face = Face((0.0, 0.0, 40.0, 40.0))
    once = with_missed([], [face])
    assert [f.weight for f in once] == pytest.approx([2 / 3])
    assert with_missed([], with_missed([], once)) == []
    back = with_missed([Face((5.0, 0.0, 45.0, 40.0))], once)  # found again: full weight, no ghost left
    assert back == [Face((5.0, 0.0, 45.0, 40.0))]
    # in a video, the frames around a key frame that missed the face still draw it at 2/3 or more
    runs = iter([[face], [], [face]])
    track = FaceTrack(every=2, detect=lambda frame: next(runs))
    out = [f for n in range(5) for _, f in track.push(n, _marked(n))] + [f for _, f in track.finish()]
    assert [round(fs[0].weight, 3) for fs in out] == [1.0, 0.833, 0.667, 0.833, 1.0]


# ---- the commands ----------------------------------------------------------------------------------------

def test_image_command_draws_faces_unless_told_not_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from clirun import run_cli

    src = tmp_path / "face.png"
    Image.fromarray(face_image(160, 120, 40, center=(60, 60))).save(src)
    assert run_cli(["image", src, "-o", tmp_path / "on.png", "--engine", "torch"], capsys)[0] == 0
    assert run_cli(["image", src, "-o", tmp_path / "off.png", "--engine", "torch", "--no-faces"], capsys)[0] == 0
    on, off = (np.asarray(Image.open(tmp_path / n)).astype(int) for n in ("on.png", "off.png"))
    diff = np.abs(on - off).max(axis=2)
    assert diff[40:80, 40:80].max() > 10          # the face is drawn differently
    assert diff[:, 110:].max() == 0 and diff[:10].max() == 0  # the rest is the same picture


def test_load_generator_draws_faces_as_the_image_command_does() -> None:
    """A script's ``vidtoon.load_generator`` gives the picture ``vidtoon image`` writes: faces drawn back in
    each image of a batch, the rest exactly the network's; ``faces=False`` is the network alone."""
    import vidtoon

    photos = np.stack([face_image(160, 120, 40, center=(60, 60)), face_image(160, 120, 40, center=(100, 60))])
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 127.5 - 1
    look, alone = vidtoon.load_generator("default"), vidtoon.load_generator("default", faces=False)
    assert look.config == alone.config  # the network's attributes and weights read through
    assert look.state_dict().keys() == alone.state_dict().keys()
    with torch.inference_mode():
        y, y0 = look(x), alone(x)
    to8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    for photo, got, bare in zip(photos, to8(y), to8(y0)):
        faces = detect_faces(photo, fraction=STILL)
        assert len(faces) == 1
        np.testing.assert_array_equal(got, draw_faces(photo, bare, faces))
    changed = (y - y0).abs().amax(dim=1)
    assert changed[0, 40:80, 40:80].max() > 0.05 and changed[1, 40:80, 80:120].max() > 0.05
    assert changed[0, :, 110:].max() == 0 and changed[1, :, :50].max() == 0  # outside a face: exact
    with torch.inference_mode():  # the look's strength scales the drawing too: at 0 nothing is drawn
        torch.testing.assert_close(vidtoon.load_generator("default", strength=0.0)(x),
                                   vidtoon.load_generator("default", strength=0.0, faces=False)(x), rtol=0, atol=0)


def test_a_look_with_faces_cannot_be_traced_and_says_what_can() -> None:
    import vidtoon

    look = vidtoon.load_generator("default")
    with pytest.raises(RuntimeError, match=r"faces=False"):
        torch.jit.trace(look, torch.zeros(1, 3, 32, 32))
    torch.jit.trace(vidtoon.load_generator("default", faces=False), torch.zeros(1, 3, 32, 32))


def test_convert_draws_faces_and_keeps_the_timing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clirun import run_cli

    src = make_video(tmp_path / "face.mp4", frames=20, size=(160, 120), pattern="face")
    for flag in ("--faces", "--no-faces"):
        code, _, err = run_cli(["convert", src, "-o", tmp_path / f"{flag}.mp4", flag, "--no-stabilize"], capsys)
        assert code == 0, err
    frames = {}
    for flag in ("--faces", "--no-faces"):
        with av.open(str(tmp_path / f"{flag}.mp4")) as c:
            assert c.streams.audio and c.streams.video[0].average_rate == 25
            frames[flag] = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames["--faces"]) == len(frames["--no-faces"]) == 20
    # every frame's face (x = 53 + frame, y = 60, 60 px wide) is drawn: key frames and those between
    for n, (on, off) in enumerate(zip(frames["--faces"], frames["--no-faces"])):
        diff = np.abs(on - off).max(axis=2)
        assert diff[45:75, 40 + n:66 + n].mean() > 2, n
        assert diff[:, 130:].mean() < 1  # far from the face: as without


def test_a_videos_detector_runs_on_one_torch_thread_and_gives_the_count_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a conversion the detector shares the cores with decoding, encoding and the engine: it runs on one
    PyTorch thread (two waited for each other when a core was busy), and the count is restored after."""
    import vidtoon.faces as faces_module

    seen: list[int] = []

    def fake_detect(rgb: np.ndarray, upright: str = "", fraction: float = VIDEO) -> list[Face]:
        seen.append(torch.get_num_threads())
        raise RuntimeError("detector failed")  # the count comes back on errors too

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(faces_module, "detect_faces", fake_detect)
        track = video_faces(Fraction(30), None, (64, 48))
        with pytest.raises(RuntimeError, match="detector failed"):
            track.push("frame", np.zeros((48, 64, 3), np.uint8))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
