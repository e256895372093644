"""`rpg-jax render`: videos of a run's policy, headless, side by side with its prior."""

import imageio.v3 as iio
import numpy as np
import pytest

from rpg_jax import render

from conftest import run_cli


def test_fast_task_video_has_moving_frames(prior_run, tmp_path, capsys):
    prior_config, _ = prior_run
    out = tmp_path / "pendulum.gif"
    code, captured = run_cli(capsys, "render", str(prior_config.out), "--out", str(out), "--steps", "24",
                             "--width", "160", "--height", "120")
    assert code == 0, captured.err
    assert "25 frames of inverted_pendulum" in captured.out
    frames = iio.imread(out)
    assert frames.shape[1:] == (120, 160, 3)
    # The GIF writer folds identical consecutive frames into one; what is left must still show motion.
    assert len(frames) >= 2
    assert not np.array_equal(frames[0], frames[-1])
    assert frames.std() > 5  # a picture, not a blank


def test_side_by_side_with_the_prior_from_the_same_start(prior_run, tmp_path, capsys):
    prior_config, _ = prior_run
    out = tmp_path / "both.mp4"
    code, captured = run_cli(capsys, "render", str(prior_config.out), "--compare", str(prior_config.out),
                             "--out", str(out), "--steps", "10", "--width", "160", "--height", "120")
    assert code == 0, captured.err
    frames = iio.imread(out)
    assert frames.shape == (11, 120, 320, 3)
    # The same policy from the same initial state: both halves show the same picture (up to video coding).
    left, right = frames[:, :, :160].astype(float), frames[:, :, 160:].astype(float)
    assert np.abs(left[:, 20:] - right[:, 20:]).mean() < 2.0  # below the labels


def test_classic_task_frames(tmp_path):
    film = render.ClassicFilm("cartpole", 96, 64)
    upright = film.frame(np.array([0.0, 0.0, 0.0, 0.0]))
    tilted = film.frame(np.array([1.0, 0.0, 0.2, 0.0]))
    assert upright.shape == (64, 96, 3) and not np.array_equal(upright, tilted)
    car = render.ClassicFilm("mountaincar", 96, 64)
    assert not np.array_equal(car.frame(np.array([-0.5, 0.0])), car.frame(np.array([0.3, 0.0])))


@pytest.mark.parametrize("task,action", [("highway", 3), ("parking", [1.0, 0.5])])
def test_driving_task_frames_follow_the_scene(task, action, tmp_path):
    """Frames drawn from the scenes a rollout records: the picture changes as the cars move, and a written GIF
    reads back."""
    import jax
    import jax.numpy as jnp

    from rpg_jax import envs

    env = envs.make(task)
    state = env.reset(jax.random.PRNGKey(0))
    scenes = [render.physical_state(state)]
    for _ in range(3):
        state = jax.jit(env.step)(state, jnp.asarray(action))
        scenes.append(render.physical_state(state))
    film = render.film_for(task, 160, 96)
    frames = [film.frame(np.asarray(scene)) for scene in scenes]
    assert frames[0].shape == (96, 160, 3) and frames[0].std() > 5
    assert not np.array_equal(frames[1], frames[3])
    render.write_video(tmp_path / "drive.gif", frames, fps=4)
    assert iio.imread(tmp_path / "drive.gif").shape[1:] == (96, 160, 3)


@pytest.mark.parametrize("argv,message", [
    (["--out", "video.avi"], "must end in .mp4 or .gif"),
    (["--with-prior"], "customized no prior"),
])
def test_bad_render_requests(prior_run, capsys, tmp_path, argv, message):
    prior_config, _ = prior_run
    code, captured = run_cli(capsys, "render", str(prior_config.out), *argv)
    assert code == 2 and message in captured.err


def test_render_of_a_missing_run(capsys, tmp_path):
    code, captured = run_cli(capsys, "render", str(tmp_path / "none"), "--out", str(tmp_path / "v.gif"))
    assert code == 2 and "config.json is missing" in captured.err
