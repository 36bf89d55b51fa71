"""A project's state at a glance: what `cliptune status` prints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func, select

from curation.records.store import SCHEMA_VERSION, Annotation, Assignment, Clip, Project, Review, User


def project_status(project: Project) -> dict[str, Any]:
    """Counts of clips, users, assignments, annotations and reviews, with the rubric in force."""
    with project.session() as session:
        clips_by_status = dict(session.execute(select(Clip.status, func.count()).group_by(Clip.status)).all())
        users_by_role = dict(session.execute(select(User.role, func.count()).group_by(User.role)).all())
        latest = select(func.max(Annotation.id)).group_by(Annotation.clip_id, Annotation.user_id)
        current_by_status = dict(
            session.execute(
                select(Annotation.status, func.count()).where(Annotation.id.in_(latest)).group_by(Annotation.status)
            ).all()
        )
        n_versions = session.scalar(select(func.count()).select_from(Annotation)) or 0
        annotated_clips = session.scalar(
            select(func.count(distinct(Annotation.clip_id))).where(Annotation.status == "submitted")
        )
        reviewed_clips = session.scalar(select(func.count(distinct(Review.clip_id))))
        n_reviews = session.scalar(select(func.count()).select_from(Review)) or 0
        n_assignments = session.scalar(select(func.count()).select_from(Assignment)) or 0
        duration = session.scalar(select(func.sum(Clip.duration_s))) or 0.0
        n_groups = session.scalar(select(func.count(distinct(Clip.group_key))))
    rubric = project.rubric
    return {
        "project": project.name,
        "path": str(project.path),
        "schema_version": SCHEMA_VERSION,
        "rubric": {"name": rubric.name, "version": project.rubric_version, "fields": [f.name for f in rubric.fields]},
        "clips": {
            "total": sum(clips_by_status.values()),
            "by_status": clips_by_status,
            "groups": n_groups,
            "hours": round(duration / 3600, 3),
        },
        "users": {"total": sum(users_by_role.values()), "by_role": users_by_role},
        "assignments": n_assignments,
        "annotations": {
            "current": sum(current_by_status.values()),
            "by_status": current_by_status,
            "versions": n_versions,
            "clips_annotated": annotated_clips,
        },
        "reviews": {"total": n_reviews, "clips_reviewed": reviewed_clips},
    }
