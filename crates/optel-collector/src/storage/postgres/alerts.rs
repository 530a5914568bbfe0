//! Alert hooks and the alerts already fired (migration 0006). Each function is the
//! [`Store`](crate::storage::Store) method of the same name, run on the store's pool.

use deadpool_postgres::Pool;

use super::get;
use crate::alerts::{AlertHook, AlertKey, AlertKind};
use crate::storage::{Result, StorageError, kinds_column, kinds_of_column};

pub(super) async fn add_alert_hook(
    pool: &Pool,
    project: &str,
    url: &str,
    secret: &str,
    kinds: &[AlertKind],
    log: bool,
    now_ms: i64,
) -> Result<AlertHook> {
    let kinds_text = kinds_column(kinds);
    let row = get(pool)
        .await?
        .query_opt(
            "INSERT INTO alert_hooks (project_id, url, secret, kinds, log, created_ms)
             SELECT id, $2, $3, $4, $5, $6 FROM projects WHERE name = $1
             RETURNING id, project_id",
            &[&project, &url, &secret, &kinds_text, &log, &now_ms],
        )
        .await?;
    let Some(row) = row else {
        return Err(StorageError::NoProject(project.to_owned()));
    };
    Ok(AlertHook {
        id: row.get(0),
        project_id: row.get(1),
        project: project.to_owned(),
        url: url.to_owned(),
        secret: secret.to_owned(),
        kinds: kinds.to_vec(),
        log,
        created_ms: now_ms,
    })
}

pub(super) async fn alert_hooks(pool: &Pool, project: Option<&str>) -> Result<Vec<AlertHook>> {
    let rows = get(pool)
        .await?
        .query(
            "SELECT h.id, h.project_id, p.name, h.url, h.secret, h.kinds, h.log,
                    h.created_ms
             FROM alert_hooks h JOIN projects p ON p.id = h.project_id
             WHERE $1::text IS NULL OR p.name = $1 ORDER BY h.id",
            &[&project],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AlertHook {
            id: r.get(0),
            project_id: r.get(1),
            project: r.get(2),
            url: r.get(3),
            secret: r.get(4),
            kinds: kinds_of_column(r.get(5)),
            log: r.get(6),
            created_ms: r.get(7),
        })
        .collect())
}

pub(super) async fn remove_alert_hook(pool: &Pool, id: i64) -> Result<bool> {
    let n = get(pool)
        .await?
        .execute("DELETE FROM alert_hooks WHERE id = $1", &[&id])
        .await?;
    Ok(n > 0)
}

pub(super) async fn mark_alert(
    pool: &Pool,
    project_id: i64,
    key: &AlertKey,
    now_ms: i64,
) -> Result<bool> {
    let n = get(pool)
        .await?
        .execute(
            "INSERT INTO alert_fired (project_id, kind, version, command, detail, fired_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &project_id,
                &key.kind.as_str(),
                &key.version,
                &key.command,
                &key.detail,
                &now_ms,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn clear_alert(pool: &Pool, project_id: i64, key: &AlertKey) -> Result<()> {
    get(pool)
        .await?
        .execute(
            "DELETE FROM alert_fired WHERE project_id = $1 AND kind = $2
               AND version = $3 AND command = $4 AND detail = $5",
            &[
                &project_id,
                &key.kind.as_str(),
                &key.version,
                &key.command,
                &key.detail,
            ],
        )
        .await?;
    Ok(())
}
