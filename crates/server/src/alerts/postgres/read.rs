//! The PostgreSQL store's reads: a query with its values bound, and the image filter's
//! candidates (`alerts/query.rs`).

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::Inner;
use crate::alerts::{image_candidates, per_image, AlertError, AlertFilter, Dialect, SqlArg};

impl Inner {
    /// `sql` with `args` bound.
    pub(super) async fn query(
        &self,
        client: &Client,
        sql: &str,
        args: &[SqlArg],
    ) -> Result<Vec<tokio_postgres::Row>, AlertError> {
        let params = binds(args);
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client.query(sql, &params).await.map_err(|e| self.err(e))
    }

    /// The image references an image filter matches, for the per-image plan (`query.rs`).
    pub(super) async fn images(
        &self,
        client: &Client,
        f: &AlertFilter,
    ) -> Result<Option<Vec<String>>, AlertError> {
        let Some(needle) = &f.image else {
            return Ok(None);
        };
        let (sql, args) = image_candidates(needle, Dialect::Postgres);
        let rows = self.query(client, &sql, &args).await?;
        let found = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(per_image(found))
    }
}

pub(super) fn binds(args: &[SqlArg]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    args.iter()
        .map(|a| -> Box<dyn ToSql + Sync + Send> {
            match a {
                SqlArg::Text(s) => Box::new(s.clone()),
                SqlArg::Int(i) => Box::new(*i),
            }
        })
        .collect()
}
