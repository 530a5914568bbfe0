//! The differential-privacy settings and daily ledger of public views (migration 0009).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::super::{DpAnswer, DpEntry, DpLookup, DpRecorded, Result, StorageError};
use crate::query::DpSettings;

pub(super) fn settings(conn: &Connection, project_id: i64) -> Result<Option<DpSettings>> {
    Ok(conn
        .query_row(
            "SELECT epsilon, daily_budget FROM public_dp WHERE project_id = ?1",
            [project_id],
            |r| {
                Ok(DpSettings {
                    epsilon: r.get(0)?,
                    daily_budget: r.get(1)?,
                })
            },
        )
        .optional()?)
}

pub(super) fn set(conn: &mut Connection, name: &str, dp: Option<DpSettings>) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id: Option<i64> = tx
        .query_row("SELECT id FROM projects WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(id) = id else {
        return Err(StorageError::NoProject(name.to_owned()));
    };
    match dp {
        Some(s) => tx.execute(
            "INSERT INTO public_dp (project_id, epsilon, daily_budget) VALUES (?1, ?2, ?3) \
             ON CONFLICT (project_id) DO UPDATE SET epsilon = ?2, daily_budget = ?3",
            params![id, s.epsilon, s.daily_budget],
        )?,
        None => tx.execute("DELETE FROM public_dp WHERE project_id = ?1", [id])?,
    };
    tx.commit()?;
    Ok(())
}

fn spent(conn: &Connection, project_id: i64, day: i64) -> Result<f64> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(epsilon), 0) FROM public_dp_answers WHERE project_id = ?1 AND day = ?2",
        params![project_id, day],
        |r| r.get(0),
    )?)
}

fn answer(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Option<DpAnswer>> {
    Ok(conn
        .query_row(sql, p, |r| {
            Ok(DpAnswer {
                first_day: r.get(0)?,
                last_day: r.get(1)?,
                body: r.get(2)?,
            })
        })
        .optional()?)
}

const SAME: &str = "SELECT first_day, last_day, body FROM public_dp_answers \
                    WHERE project_id = ?1 AND day = ?2 AND query = ?3";
const LATEST: &str = "SELECT first_day, last_day, body FROM public_dp_answers \
                      WHERE project_id = ?1 AND day = ?2 AND view = ?3 \
                      ORDER BY created_ms DESC, query LIMIT 1";

pub(super) fn lookup(
    conn: &Connection,
    project_id: i64,
    day: i64,
    view: &str,
    query: &str,
) -> Result<DpLookup> {
    Ok(DpLookup {
        spent: spent(conn, project_id, day)?,
        same: answer(conn, SAME, params![project_id, day, query])?,
        latest: answer(conn, LATEST, params![project_id, day, view])?,
    })
}

pub(super) fn record(conn: &mut Connection, e: &DpEntry<'_>) -> Result<DpRecorded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM public_dp_answers WHERE project_id = ?1 AND day < ?2",
        params![e.project_id, e.day - 1],
    )?;
    let spent_before = spent(&tx, e.project_id, e.day)?;
    if let Some(answer) = answer(&tx, SAME, params![e.project_id, e.day, e.query])? {
        tx.commit()?;
        return Ok(DpRecorded::Raced {
            spent: spent_before,
            answer,
        });
    }
    if spent_before + e.epsilon > e.daily_budget + 1e-9 {
        let latest = answer(&tx, LATEST, params![e.project_id, e.day, e.view])?;
        tx.commit()?;
        return Ok(DpRecorded::Spent {
            spent: spent_before,
            latest,
        });
    }
    tx.execute(
        "INSERT INTO public_dp_answers \
         (project_id, day, query, view, first_day, last_day, epsilon, body, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.project_id,
            e.day,
            e.query,
            e.view,
            e.first_day,
            e.last_day,
            e.epsilon,
            e.body,
            e.now_ms
        ],
    )?;
    tx.commit()?;
    Ok(DpRecorded::Stored {
        spent: spent_before + e.epsilon,
    })
}
