"""Inference on your own images: init_hand_model / inference_hand, HandMeshInferencer, the drawing, .obj files,
demo/hand_demo.py and tools/test.py --show-dir, with a small FastViT (T8) whose weights are random but make the
mesh depend on the image (a real check that boxes and crops are handled), and a synthetic MANO file."""
import importlib.util
import os
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from helpers import check_ok, randomize_
from helpers import run_in_process as run
from mmfastvit.datasets.synthetic import make_tiny_freihand
from mmfastvit.hand import (HandMeshInferencer, draw_hand_mesh, inference_hand, init_hand_model, make_synthetic_mano,
                            save_obj)
from mmfastvit.hand.transforms import HandCropAffine

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'hand_mesh_fastvit_sa12_freihand.py')
TEST = osp.join(REPO, 'tools', 'test.py')
DEMO = osp.join(REPO, 'demo', 'hand_demo.py')
OUT_SIZE, BOX, REFERENCE = 224, 180.0, 224.0  # the config's test crop: a 180 px box of a 224 px image -> 224
KEYS = ('vertices', 'joints', 'camera', 'joints_2d', 'vertices_2d', 'pose', 'betas', 'bbox', 'crop_matrix')
SHAPES = dict(vertices=(778, 3), joints=(21, 3), camera=(3, ), joints_2d=(21, 2), vertices_2d=(778, 2))


@pytest.fixture(scope='module')
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp('hand_inference')


@pytest.fixture(scope='module')
def mano_path(tmp):
    return make_synthetic_mano(str(tmp / 'MANO_RIGHT.pkl'))


@pytest.fixture(scope='module')
def options(mano_path):
    return {'model.backbone.arch': 't8', 'model.head.mano_path': mano_path}


@pytest.fixture(scope='module')
def checkpoint(tmp, options, freihand, photo):
    """A T8 hand model with random BatchNorm statistics, and head weights that make the camera, pose and shape change
    with the image (the default init makes them almost constant) around their initial values, saved as a
    checkpoint."""
    torch.manual_seed(0)  # the backbone's initial weights
    with pytest.warns(UserWarning, match='random weights'):
        model = init_hand_model(CONFIG, None, cfg_options=options)
    randomize_(model.backbone)
    images = [cv2.imread(osp.join(freihand['root'], 'evaluation', 'rgb', f'{i:08d}.jpg')) for i in range(3)]
    images = [cv2.resize(image, (224, 224))[..., ::-1].copy() for image in images + [photo[1]]]
    inputs = [torch.from_numpy(image).permute(2, 0, 1) for image in images]
    gen = torch.Generator().manual_seed(0)
    # output std per unit of feature spread: camera scale +-10 %, translation +-1 cm, pose 0.3, shape 0.5
    camera_std = torch.tensor([0.9, 0.01, 0.01])[:, None]
    with torch.no_grad():
        feats = model.head._pool(model.extract_feat(model.data_preprocessor(dict(inputs=inputs), False)['inputs']))
        mean = feats.mean(0)
        spread = (feats - mean).norm(dim=1).mean()  # how far one image's features lie from the mean
        for fc, std in ((model.head.fc_camera, camera_std), (model.head.fc_pose, 0.3), (model.head.fc_betas, 0.5)):
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * std / spread)
            fc.bias.sub_(fc.weight @ mean)  # outputs = initial bias + weight @ (features - their mean)
    path = tmp / 'hand_t8.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def model(checkpoint, options):
    return init_hand_model(CONFIG, checkpoint, cfg_options=options)


@pytest.fixture(scope='module')
def freihand(tmp, mano_path):
    """A tiny generated FreiHAND (64 px images): hands to run on, and the test set of tools/test.py."""
    return make_tiny_freihand(str(tmp / 'freihand'), num_train=1, num_eval=3, mano_path=mano_path, size=64)


@pytest.fixture(scope='module')
def photo(tmp, freihand):
    """A 120 x 90 PNG (lossless): a generated hand image resized onto a noisy background, and the array."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    hand = cv2.imread(osp.join(freihand['root'], 'evaluation', 'rgb', '00000000.jpg'))
    image[5:85, 20:100] = cv2.resize(hand, (80, 80), interpolation=cv2.INTER_LINEAR)
    path = tmp / 'photo.png'
    assert cv2.imwrite(str(path), image)
    return str(path), image


def crop_to_image_independently(points_3d, camera, box, bbox_scale=1.0):
    """The documented geometry, written out: the weak-perspective camera into [-1, 1], to crop pixels, then the
    box's square crop (side 180 / 224 of the box's longer side, about its centre) back to image pixels."""
    scale, shift = camera[0], camera[1:]
    crop = (scale * (points_3d[:, :2] + shift) + 1.0) * OUT_SIZE / 2.0
    x1, y1, x2, y2 = box
    side = BOX / REFERENCE * max(x2 - x1, y2 - y1) * bbox_scale
    return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0]) + (crop - OUT_SIZE / 2.0) * side / OUT_SIZE


def test_path_and_array_give_the_same_outputs_of_the_right_shapes(model, photo):
    path, image = photo
    from_path = inference_hand(model, path)
    from_array = inference_hand(model, image.copy())
    assert set(KEYS) <= set(from_path)
    for key, shape in SHAPES.items():
        assert from_path[key].shape == shape, key
    for key in KEYS:
        np.testing.assert_array_equal(from_path[key], from_array[key], err_msg=key)
    np.testing.assert_array_equal(from_path['bbox'], [0, 0, 120, 90])  # default: the whole image
    # a list of inputs gives one result per input, the same as one at a time
    both = inference_hand(model, [path, image], bbox=[None, (20, 5, 100, 85)])
    np.testing.assert_allclose(both[0]['vertices'], from_path['vertices'], atol=1e-5)
    single = inference_hand(model, image, bbox=(20, 5, 100, 85))
    np.testing.assert_allclose(both[1]['joints_2d'], single['joints_2d'], atol=1e-3)


@pytest.mark.parametrize('box, bbox_scale', [(None, 1.0), ((20, 5, 100, 85), 1.0), ((10.5, 0, 110, 60), 1.3)])
def test_2d_points_are_the_camera_projection_in_original_pixels(model, photo, box, bbox_scale):
    _, image = photo
    result = inference_hand(model, image, bbox=box, bbox_scale=bbox_scale)
    box = (0, 0, 120, 90) if box is None else box
    for points, points_2d in (('joints', 'joints_2d'), ('vertices', 'vertices_2d')):
        expected = crop_to_image_independently(result[points].astype(np.float64), result['camera'], box, bbox_scale)
        np.testing.assert_allclose(result[points_2d], expected, atol=2e-3, err_msg=points_2d)
    # the 3D joints are the model's own (root-relative: the wrist at the origin)
    np.testing.assert_allclose(result['joints'][0], 0.0, atol=1e-6)


def test_a_box_in_a_bigger_canvas_gives_the_same_mesh_shifted(model, freihand):
    hand = cv2.imread(osp.join(freihand['root'], 'evaluation', 'rgb', '00000001.jpg'))
    offset = np.array([57, 33])
    canvas = np.random.default_rng(1).integers(0, 256, size=(160, 200, 3), dtype=np.uint8)
    canvas[offset[1]:offset[1] + 64, offset[0]:offset[0] + 64] = hand
    alone = inference_hand(model, hand)
    placed = inference_hand(model, canvas, bbox=(offset[0], offset[1], offset[0] + 64, offset[1] + 64))
    # The model does look at the crop: a box 3 px off gives another mesh.
    moved = inference_hand(model, canvas, bbox=(offset[0] + 3, offset[1], offset[0] + 67, offset[1] + 64))
    # The crops agree up to cv2's fixed-point warp (a few dozen pixels one level apart), so the results agree to well
    # within what that 3 px shift changes, and to 0.1 mm / 0.05 px.
    for key in ('vertices', 'joints', 'camera', 'pose', 'betas', 'joints_2d', 'vertices_2d'):
        shift = offset if key.endswith('_2d') else 0
        error = np.abs(placed[key] - (alone[key] + shift)).max()
        effect = np.abs(moved[key] - (alone[key] + shift)).max()
        assert error < 0.05 * effect, (key, error, effect)
    np.testing.assert_allclose(placed['vertices'], alone['vertices'], atol=1e-4)
    for key in ('joints_2d', 'vertices_2d'):
        np.testing.assert_allclose(placed[key], alone[key] + offset, atol=5e-2, err_msg=key)


def test_bad_inputs_are_named(model, photo, tmp):
    _, image = photo
    with pytest.raises(ValueError, match=r'bbox \[200.0, 10.0, 300.0, 50.0\] lies outside the 120 x 90 image'):
        inference_hand(model, image, bbox=(200, 10, 300, 50))
    with pytest.raises(ValueError, match=r'bbox \[10.0, 10.0, 10.0, 40.0\] is empty'):
        inference_hand(model, image, bbox=(10, 10, 10, 40))
    with pytest.raises(ValueError, match='bbox must be 4 numbers'):
        inference_hand(model, image, bbox=(10, 10, 40))
    with pytest.raises(TypeError, match='img must be an image path .* got int'):
        inference_hand(model, 123)
    with pytest.raises(ValueError, match=r'img must be .* got a float32 array of shape \(90, 120, 3\)'):
        inference_hand(model, image.astype(np.float32))
    missing = str(tmp / 'no_such_image.jpg')
    with pytest.raises(FileNotFoundError, match='no_such_image.jpg'):
        inference_hand(model, missing)
    with pytest.raises(ValueError, match='bbox_scale must be a positive number'):
        inference_hand(model, image, bbox_scale=0)


def parse_obj(path):
    vertices, faces = [], []
    with open(path) as f:
        for line in f:
            if line.startswith('v '):
                vertices.append([float(v) for v in line.split()[1:]])
            elif line.startswith('f '):
                faces.append([int(i) for i in line.split()[1:]])
    return np.array(vertices), np.array(faces)


def test_obj_round_trips(model, photo, tmp):
    result = inference_hand(model, photo[1])
    faces = model.head.mano.faces.numpy()
    path = tmp / 'mesh' / 'hand.obj'
    assert save_obj(path, result['vertices'], faces, header='a test hand') == str(path)
    vertices, parsed_faces = parse_obj(path)
    assert vertices.shape == (778, 3) and parsed_faces.shape == (1538, 3)
    np.testing.assert_array_equal(vertices.astype(np.float32), result['vertices'])  # exact for float32
    np.testing.assert_array_equal(parsed_faces - 1, faces)  # 1-based in the file
    assert path.read_text().startswith('# a test hand\n')
    # bad input is refused and leaves nothing behind
    bad_faces = faces.copy()
    bad_faces[0, 0] = 778
    with pytest.raises(ValueError, match=r'outside \[0, 778\)'):
        save_obj(tmp / 'mesh' / 'bad.obj', result['vertices'], bad_faces)
    with pytest.raises(ValueError, match=r'vertices must be an \(N, 3\) array'):
        save_obj(tmp / 'mesh' / 'bad.obj', result['vertices'][:, :2], faces)
    assert sorted(os.listdir(tmp / 'mesh')) == ['hand.obj']


def test_draw_hand_mesh_covers_the_triangles_only():
    image = np.full((40, 50, 3), 30, np.uint8)
    vertices_2d = np.array([[10.0, 10.0], [30.0, 10.0], [10.0, 30.0], [45.0, 35.0]])
    drawing = draw_hand_mesh(image, vertices_2d, np.array([[0, 1, 2]]))
    assert drawing.shape == image.shape and (image == 30).all()  # a new image; the input is untouched
    changed = np.any(drawing != image, axis=2)
    assert changed[15, 15] and changed[12, 25] and changed[25, 12]  # inside the triangle
    assert not changed[28, 28] and not changed[35, 45] and not changed[2, 2]  # outside it (vertex 3 is unused)
    with pytest.raises(ValueError, match='faces must be'):
        draw_hand_mesh(image, vertices_2d, np.array([[0, 1, 4]]))


def _hull_mask(shape, points, margin):
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(points - 0.5).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0


def test_inferencer_writes_the_overlay_and_the_mesh(model, checkpoint, options, photo, tmp):
    path, image = photo
    inferencer = HandMeshInferencer(CONFIG, checkpoint, device='cpu', cfg_options=options)
    out_dir = tmp / 'inferencer'
    box = (20, 5, 100, 85)
    out = inferencer(path, bboxes=[box], out_dir=str(out_dir), return_vis=True)
    prediction = out['predictions'][0]
    expected = inference_hand(model, path, bbox=box)
    for key in KEYS:
        np.testing.assert_allclose(prediction[key], expected[key], atol=1e-5, err_msg=key)
    assert prediction['vis_path'] == str(out_dir / 'vis' / 'photo.png')
    assert prediction['obj_path'] == str(out_dir / 'meshes' / 'photo.obj')
    overlay = cv2.imread(prediction['vis_path'])
    assert overlay.shape == image.shape
    np.testing.assert_array_equal(overlay, out['visualization'][0])
    # changed where the mesh projects, untouched away from it
    changed = np.any(overlay != image, axis=2)
    points = np.concatenate([prediction['vertices_2d'], prediction['joints_2d']])
    inside = points[(points >= 0).all(1) & (points < [120, 90]).all(1)]
    assert len(inside) > 100
    pixels = np.floor(inside).astype(int)
    assert changed[pixels[:, 1], pixels[:, 0]].mean() > 0.9
    far = ~_hull_mask(image.shape, points, margin=4)
    assert far.sum() > 0 and not changed[far].any()
    vertices, faces = parse_obj(prediction['obj_path'])
    np.testing.assert_array_equal(vertices.astype(np.float32), prediction['vertices'])
    assert faces.shape == (1538, 3)

    # a folder gives its images, by name (other files are left out)
    folder = tmp / 'folder'
    folder.mkdir()
    cv2.imwrite(str(folder / 'b.png'), image)
    cv2.imwrite(str(folder / 'a.jpg'), image)
    (folder / 'notes.txt').write_text('not an image')
    assert inferencer._inputs_to_list(str(folder)) == [str(folder / 'a.jpg'), str(folder / 'b.png')]
    # arrays get index names; one bad input stops the call before anything is written
    second = tmp / 'inferencer_arrays'
    names = [p['vis_path'] for p in inferencer([image, image[:, ::-1]], out_dir=str(second))['predictions']]
    assert names == [str(second / 'vis' / '00000000.png'), str(second / 'vis' / '00000001.png')]
    third = tmp / 'inferencer_bad'
    with pytest.raises(ValueError, match=r'bboxes\[1\] \[0.0, 0.0, 0.0, 5.0\] is empty'):
        inferencer([image, image], bboxes=[None, (0, 0, 0, 5)], out_dir=str(third))
    with pytest.raises(ValueError, match='2 boxes for 1 images'):
        inferencer(image, bboxes=[None, None], out_dir=str(third))
    assert not third.exists()


def _load_demo():
    spec = importlib.util.spec_from_file_location('hand_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_script_writes_the_overlay_and_the_obj(checkpoint, mano_path, photo, tmp, capsys):
    demo = _load_demo()
    path, image = photo
    out_dir = tmp / 'demo'
    result = demo.main([path, CONFIG, '--checkpoint', checkpoint, '--bbox', '20', '5', '100', '85', '--mano-path',
                        mano_path, '--out-dir', str(out_dir), '--cfg-options', 'model.backbone.arch=t8'])
    printed = capsys.readouterr().out
    for key in ('vis_path', 'obj_path'):
        assert osp.isfile(result[key]) and result[key] in printed
    assert cv2.imread(result['vis_path']).shape == image.shape
    with pytest.raises(SystemExit) as exit_info, pytest.warns(UserWarning, match='random weights'):
        demo.main([path, CONFIG, '--bbox', '500', '5', '600', '85', '--mano-path', mano_path, '--out-dir',
                   str(tmp / 'demo_bad'), '--cfg-options', 'model.backbone.arch=t8'])
    assert exit_info.value.code == 2
    assert 'lies outside the 120 x 90 image' in capsys.readouterr().err
    assert not (tmp / 'demo_bad' / 'vis').exists()


def test_config_carries_the_hook_disabled():
    hook = Config.fromfile(CONFIG).default_hooks.visualization
    assert hook.type == 'mmfastvit.HandMeshVisualizationHook' and hook.draw is False


def test_tools_test_show_dir_draws_one_picture_per_test_image(freihand, checkpoint, mano_path, tmp):
    """The config's test crop scaled to the 64 px images (the 180 px box of 224 -> 51.4 px), resized to 224. The tool
    runs through its main(argv) in this interpreter (helpers.run_in_process)."""
    size = freihand['size']
    root = freihand['root']
    box = BOX * size / REFERENCE
    show_dir = tmp / 'show'
    options = ['model.backbone.arch=t8', 'model.backbone.init_cfg=None', f'model.head.mano_path={mano_path}',
               f'test_dataloader.dataset.data_root={root}', 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False', 'test_dataloader.batch_size=2',
               f'test_dataloader.dataset.pipeline.1.mano_path={mano_path}',
               f'test_dataloader.dataset.pipeline.2.center=({size / 2},{size / 2})',
               f'test_dataloader.dataset.pipeline.2.box_size={box}', 'default_hooks.visualization.save_mesh=True']
    check_ok(run(TEST, CONFIG, checkpoint, '--work-dir', tmp / 'test_work_dir', '--show-dir', show_dir,
                 '--out', tmp / 'preds.pkl', '--cfg-options', *options, cwd=tmp))
    with open(tmp / 'preds.pkl', 'rb') as f:
        predictions = {osp.basename(p['img_path'])[:-4]: p for p in pickle.load(f)}
    names = ['00000000', '00000001', '00000002']
    assert sorted(predictions) == names
    assert sorted(os.listdir(show_dir)) == sorted([f'{n}.png' for n in names] + [f'{n}.obj' for n in names])
    crop_transform = HandCropAffine(center=(size / 2, size / 2), box_size=box, out_size=OUT_SIZE)
    for name in names:
        picture = cv2.imread(str(show_dir / f'{name}.png'))
        crop = crop_transform.crop(dict(img=cv2.imread(osp.join(root, 'evaluation', 'rgb', f'{name}.jpg'))))['img']
        assert picture.shape == crop.shape == (OUT_SIZE, OUT_SIZE, 3)
        # the mesh and joints drawn where the predicted camera projects them into the crop, the rest of it as it was
        changed = np.any(picture != crop, axis=2)
        prediction = predictions[name]
        camera = prediction['pred_camera'].numpy()
        points = np.concatenate([prediction['pred_vertices'].numpy(), prediction['pred_joints'].numpy()])
        points = (camera[0] * (points[:, :2] + camera[1:]) + 1.0) * OUT_SIZE / 2.0
        inside = np.floor(points[(points >= 0).all(1) & (points < OUT_SIZE).all(1)]).astype(int)
        assert len(inside) > 100
        assert changed[inside[:, 1], inside[:, 0]].mean() > 0.9
        far = ~_hull_mask(crop.shape, points, margin=4)
        assert far.mean() > 0.2 and not changed[far].any()
        vertices, faces = parse_obj(show_dir / f'{name}.obj')
        np.testing.assert_array_equal(vertices.astype(np.float32), prediction['pred_vertices'].numpy())
        assert faces.shape == (1538, 3)
