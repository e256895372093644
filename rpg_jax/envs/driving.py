"""What highway-env's vehicles share, in JAX: the kinematic bicycle, rectangles and their collision test.

Each function is the batched twin of a highway-env 1.12 method (named in its docstring) and computes the same
numbers on the same inputs (`tests/test_driving.py` feeds both the same states).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp

LENGTH, WIDTH = 5.0, 2.0
"""A vehicle's rectangle [m] (highway-env `Vehicle.LENGTH`, `WIDTH`)."""
MAX_SPEED, MIN_SPEED = 40.0, -40.0


def not_zero(x: chex.Array, eps: float = 1e-2) -> chex.Array:
    """`utils.not_zero`: x, or ±eps where |x| ≤ eps (the sign of x, + at 0)."""
    return jnp.where(jnp.abs(x) > eps, x, jnp.where(x >= 0, eps, -eps))


def wrap_to_pi(x: chex.Array) -> chex.Array:
    return jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi


def direction(heading: chex.Array) -> chex.Array:
    return jnp.stack([jnp.cos(heading), jnp.sin(heading)], -1)


def bicycle_step(position, heading, speed, steering, acceleration, crashed, dt: float):
    """`Vehicle.step` without its impact: `clip_actions`, then one Euler step of the kinematic bicycle.

    A crashed vehicle steers straight and brakes to a stop; speed stays within ±40 m/s. Returns (position,
    heading, speed, steering, acceleration): the controls as clipped, which highway-env writes back into the
    vehicle's held action (a vehicle that holds its action across frames keeps braking by them). Shapes
    broadcast: position (..., 2), the rest (...).
    """
    steering = jnp.where(crashed, 0.0, steering)
    acceleration = jnp.where(crashed, -speed, acceleration)
    acceleration = jnp.where(speed > MAX_SPEED, jnp.minimum(acceleration, MAX_SPEED - speed), acceleration)
    acceleration = jnp.where(speed < MIN_SPEED, jnp.maximum(acceleration, MIN_SPEED - speed), acceleration)
    beta = jnp.arctan(0.5 * jnp.tan(steering))
    position = position + (speed * dt)[..., None] * direction(heading + beta)
    heading = heading + speed * jnp.sin(beta) / (LENGTH / 2) * dt
    return position, heading, speed + acceleration * dt, steering, acceleration


def rectangle(position: chex.Array, heading: chex.Array, length, width) -> chex.Array:
    """`RoadObject.polygon` without the repeated first corner: corners (..., 4, 2), in highway-env's order."""
    half = jnp.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.5, -0.5]])
    size = jnp.stack([jnp.broadcast_to(length, jnp.shape(heading)), jnp.broadcast_to(width, jnp.shape(heading))],
                     -1)
    points = half * size[..., None, :]
    c, s = jnp.cos(heading)[..., None], jnp.sin(heading)[..., None]
    rotated = jnp.stack([c * points[..., 0] - s * points[..., 1], s * points[..., 0] + c * points[..., 1]], -1)
    return rotated + position[..., None, :]


def _interval_distance(min_a, max_a, min_b, max_b):
    """`utils.interval_distance`: the gap between two projections (negative where they overlap)."""
    return jnp.where(min_a < min_b, min_b - max_a, min_a - max_b)


def polygons_intersecting(a: chex.Array, b: chex.Array, displacement_a: chex.Array, displacement_b: chex.Array):
    """`utils.are_polygons_intersecting` for two rectangles (corners (..., 4, 2)): the separating-axis test now
    and after the displacements.

    Returns (intersecting, will_intersect, translation): the translation, defined where `will_intersect`, moves
    `a` out of `b` along the edge normal of least overlap (the first such edge on ties, as highway-env's loop).
    """
    intersecting = will_intersect = jnp.ones(a.shape[:-2], bool)
    best = jnp.full(a.shape[:-2], jnp.inf)
    axis = jnp.zeros(a.shape[:-2] + (2,))
    centre = a.mean(-2) - b.mean(-2)
    relative = displacement_a - displacement_b
    for polygon in (a, b):
        for k in range(4):
            p1, p2 = polygon[..., k, :], polygon[..., (k + 1) % 4, :]
            normal = jnp.stack([p1[..., 1] - p2[..., 1], p2[..., 0] - p1[..., 0]], -1)
            normal = normal / jnp.linalg.norm(normal, axis=-1, keepdims=True)
            project_a, project_b = jnp.einsum("...pk,...k->...p", a, normal), jnp.einsum("...pk,...k->...p", b, normal)
            min_a, max_a, min_b, max_b = project_a.min(-1), project_a.max(-1), project_b.min(-1), project_b.max(-1)
            intersecting = intersecting & (_interval_distance(min_a, max_a, min_b, max_b) <= 0)
            moved = jnp.einsum("...k,...k->...", normal, relative)
            distance = _interval_distance(min_a + jnp.minimum(moved, 0.0), max_a + jnp.maximum(moved, 0.0), min_b,
                                          max_b)
            will_intersect = will_intersect & (distance <= 0)
            closer = jnp.abs(distance) < best
            oriented = jnp.where((jnp.einsum("...k,...k->...", centre, normal) > 0)[..., None], normal, -normal)
            best = jnp.where(closer, jnp.abs(distance), best)
            axis = jnp.where(closer[..., None], oriented, axis)
    return intersecting, will_intersect, best[..., None] * axis


def collide(position, heading, speed, diagonal, other_position, other_heading, other_speed, other_length,
            other_width, other_diagonal, dt: float):
    """`RoadObject._is_colliding` of a vehicle against others: the distance pre-check, then the rectangle test with
    each one's displacement over `dt`. Returns (intersecting, will_intersect, translation), batched over the
    others."""
    near = jnp.linalg.norm(other_position - position, axis=-1) <= (diagonal + other_diagonal) / 2 + speed * dt
    mine = rectangle(position, heading, LENGTH, WIDTH)
    theirs = rectangle(other_position, other_heading, other_length, other_width)
    own_move = (speed * dt)[..., None] * direction(heading)
    their_move = (other_speed * dt)[..., None] * direction(other_heading)
    intersecting, will_intersect, translation = polygons_intersecting(
        jnp.broadcast_to(mine, theirs.shape), theirs, own_move, their_move)
    return intersecting & near, will_intersect & near, translation
