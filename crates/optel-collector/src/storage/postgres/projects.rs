//! Projects and their ingest keys. Each function is the [`Store`](crate::storage::Store)
//! method of the same name, run on the store's pool.

use deadpool_postgres::Pool;

use super::get;
use crate::storage::{KeyGrant, Project, Result, StorageError, origins_column, origins_of_column};

const PROJECT_COLUMNS: &str = "id, name, created_ms, public";

fn project_from_row(r: &tokio_postgres::Row) -> Project {
    Project {
        id: r.get(0),
        name: r.get(1),
        created_ms: r.get(2),
        public: r.get(3),
    }
}

pub(super) async fn create_project(
    pool: &Pool,
    name: &str,
    key_hash: &str,
    now_ms: i64,
) -> Result<Project> {
    let mut client = get(pool).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "INSERT INTO projects (name, created_ms) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&name, &now_ms],
        )
        .await?;
    let Some(row) = row else {
        return Err(StorageError::ProjectExists(name.to_owned()));
    };
    let id: i64 = row.get(0);
    tx.execute(
        "INSERT INTO ingest_keys (key_hash, project_id, created_ms) VALUES ($1, $2, $3)",
        &[&key_hash, &id, &now_ms],
    )
    .await?;
    tx.commit().await?;
    Ok(Project {
        id,
        name: name.to_owned(),
        created_ms: now_ms,
        public: false,
    })
}

pub(super) async fn delete_project(pool: &Pool, name: &str) -> Result<bool> {
    // `events` has no foreign key (an RI check per inserted event cost ~18 % of the
    // ingest's database time, migration 0002): its rows go explicitly; the rollups and
    // keys follow the project by ON DELETE CASCADE.
    let mut client = get(pool).await?;
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM events WHERE project_id IN (SELECT id FROM projects WHERE name = $1)",
        &[&name],
    )
    .await?;
    let n = tx
        .execute("DELETE FROM projects WHERE name = $1", &[&name])
        .await?;
    tx.commit().await?;
    Ok(n > 0)
}

pub(super) async fn set_public(pool: &Pool, name: &str, public: bool) -> Result<()> {
    let n = get(pool)
        .await?
        .execute(
            "UPDATE projects SET public = $2 WHERE name = $1",
            &[&name, &public],
        )
        .await?;
    if n == 0 {
        return Err(StorageError::NoProject(name.to_owned()));
    }
    Ok(())
}

pub(super) async fn list_projects(pool: &Pool) -> Result<Vec<Project>> {
    let rows = get(pool)
        .await?
        .query(
            &format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(project_from_row).collect())
}

pub(super) async fn project_by_name(pool: &Pool, name: &str) -> Result<Option<Project>> {
    let row = get(pool)
        .await?
        .query_opt(
            &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = $1"),
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(project_from_row))
}

pub(super) async fn add_key_with_origins(
    pool: &Pool,
    project: &str,
    key_hash: &str,
    origins: &[String],
    now_ms: i64,
) -> Result<()> {
    let origins = origins_column(origins);
    let n = get(pool)
        .await?
        .execute(
            "INSERT INTO ingest_keys (key_hash, project_id, created_ms, origins)
             SELECT $2, id, $3, $4 FROM projects WHERE name = $1",
            &[&project, &key_hash, &now_ms, &origins],
        )
        .await?;
    if n == 0 {
        return Err(StorageError::NoProject(project.to_owned()));
    }
    Ok(())
}

pub(super) async fn revoke_key(pool: &Pool, key_hash: &str, now_ms: i64) -> Result<bool> {
    let n = get(pool)
        .await?
        .execute(
            "UPDATE ingest_keys SET revoked_ms = $2
             WHERE key_hash = $1 AND revoked_ms IS NULL",
            &[&key_hash, &now_ms],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn project_for_key(pool: &Pool, key_hash: &str) -> Result<Option<KeyGrant>> {
    let row = get(pool)
        .await?
        .query_opt(
            "SELECT p.id, p.name, p.created_ms, p.public, k.origins
             FROM ingest_keys k JOIN projects p ON p.id = k.project_id
             WHERE k.key_hash = $1 AND k.revoked_ms IS NULL",
            &[&key_hash],
        )
        .await?;
    Ok(row.as_ref().map(|r| KeyGrant {
        project: project_from_row(r),
        origins: origins_of_column(r.get(4)),
    }))
}
