"""Procedural synthetic faces with exact 68-point landmarks (the ``synthetic`` data set).

``generate_face(seed, size)`` is the entry point; ``load_template()`` gives the 3D mean face
and deformation modes from ``template.json``; ``FaceParams`` + ``render_face`` render chosen
geometry (for tests and controlled studies).
"""

from landmarks.synthetic.appearance import Appearance, sample_appearance
from landmarks.synthetic.generator import SyntheticFace, generate_face, render_face, sample_params
from landmarks.synthetic.geometry import FaceParams, Projection, project_face, rotation_matrix
from landmarks.synthetic.template import FaceTemplate, Mode, load_template

__all__ = [
    "Appearance",
    "FaceParams",
    "FaceTemplate",
    "Mode",
    "Projection",
    "SyntheticFace",
    "generate_face",
    "load_template",
    "project_face",
    "render_face",
    "rotation_matrix",
    "sample_appearance",
    "sample_params",
]
