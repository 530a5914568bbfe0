//! The differential-privacy settings and daily ledger of public views (migration 0007).
//!
//! Several collectors may share the database: [`record`] locks the project's settings row
//! (`FOR UPDATE`) so that two of them cannot both spend the day's last ε.

use deadpool_postgres::{GenericClient, Pool};

use super::super::{DpAnswer, DpEntry, DpLookup, DpRecorded, Result, StorageError};
use super::get;
use crate::query::DpSettings;

pub(super) async fn settings(pool: &Pool, project_id: i64) -> Result<Option<DpSettings>> {
    let row = get(pool)
        .await?
        .query_opt(
            "SELECT epsilon, daily_budget FROM public_dp WHERE project_id = $1",
            &[&project_id],
        )
        .await?;
    Ok(row.map(|r| DpSettings {
        epsilon: r.get(0),
        daily_budget: r.get(1),
    }))
}

pub(super) async fn set(pool: &Pool, name: &str, dp: Option<DpSettings>) -> Result<()> {
    let client = get(pool).await?;
    let Some(row) = client
        .query_opt("SELECT id FROM projects WHERE name = $1", &[&name])
        .await?
    else {
        return Err(StorageError::NoProject(name.to_owned()));
    };
    let id: i64 = row.get(0);
    match dp {
        Some(s) => {
            client
                .execute(
                    "INSERT INTO public_dp (project_id, epsilon, daily_budget) VALUES ($1, $2, $3)
                     ON CONFLICT (project_id) DO UPDATE SET epsilon = $2, daily_budget = $3",
                    &[&id, &s.epsilon, &s.daily_budget],
                )
                .await?
        }
        None => {
            client
                .execute("DELETE FROM public_dp WHERE project_id = $1", &[&id])
                .await?
        }
    };
    Ok(())
}

const SPENT: &str = "SELECT COALESCE(SUM(epsilon), 0)::DOUBLE PRECISION FROM public_dp_answers \
                     WHERE project_id = $1 AND day = $2";
const SAME: &str = "SELECT first_day, last_day, body FROM public_dp_answers \
                    WHERE project_id = $1 AND day = $2 AND query = $3";
const LATEST: &str = "SELECT first_day, last_day, body FROM public_dp_answers \
                      WHERE project_id = $1 AND day = $2 AND view = $3 \
                      ORDER BY created_ms DESC, query LIMIT 1";

async fn answer<C: GenericClient>(
    c: &C,
    sql: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<DpAnswer>> {
    Ok(c.query_opt(sql, p).await?.map(|r| DpAnswer {
        first_day: r.get(0),
        last_day: r.get(1),
        body: r.get(2),
    }))
}

pub(super) async fn lookup(
    pool: &Pool,
    project_id: i64,
    day: i64,
    view: &str,
    query: &str,
) -> Result<DpLookup> {
    let c = get(pool).await?;
    let spent: f64 = c.query_one(SPENT, &[&project_id, &day]).await?.get(0);
    Ok(DpLookup {
        spent,
        same: answer(&c, SAME, &[&project_id, &day, &query]).await?,
        latest: answer(&c, LATEST, &[&project_id, &day, &view]).await?,
    })
}

pub(super) async fn record(pool: &Pool, e: &DpEntry<'_>) -> Result<DpRecorded> {
    let mut client = get(pool).await?;
    let tx = client.transaction().await?;
    tx.query_opt(
        "SELECT 1 FROM public_dp WHERE project_id = $1 FOR UPDATE",
        &[&e.project_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM public_dp_answers WHERE project_id = $1 AND day < $2",
        &[&e.project_id, &(e.day - 1)],
    )
    .await?;
    let spent: f64 = tx.query_one(SPENT, &[&e.project_id, &e.day]).await?.get(0);
    if let Some(answer) = answer(&tx, SAME, &[&e.project_id, &e.day, &e.query]).await? {
        tx.commit().await?;
        return Ok(DpRecorded::Raced { spent, answer });
    }
    if spent + e.epsilon > e.daily_budget + 1e-9 {
        let latest = answer(&tx, LATEST, &[&e.project_id, &e.day, &e.view]).await?;
        tx.commit().await?;
        return Ok(DpRecorded::Spent { spent, latest });
    }
    tx.execute(
        "INSERT INTO public_dp_answers
         (project_id, day, query, view, first_day, last_day, epsilon, body, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &e.project_id,
            &e.day,
            &e.query,
            &e.view,
            &e.first_day,
            &e.last_day,
            &e.epsilon,
            &e.body,
            &e.now_ms,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(DpRecorded::Stored {
        spent: spent + e.epsilon,
    })
}
