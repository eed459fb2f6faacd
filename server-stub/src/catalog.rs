//! The catalog: what TVs can sell, loaded once from a JSON file (`assets/catalog.json`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use protocol::{AccountId, Catalog, CatalogItem, Currency, ItemId, ItemKind, Merchant, Money};
use serde::Deserialize;

#[derive(Deserialize)]
struct FileCatalog {
    currency: String,
    merchants: Vec<FileMerchant>,
    items: Vec<FileItem>,
    /// Devices Couchpay knows (SPEC D1): what a register entry's product is.
    #[serde(default)]
    products: Vec<Product>,
}

/// A kind of device in the register: its id, its name for people and the OS version a new
/// one leaves the factory with.
#[derive(Clone, Debug, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub factory_version: protocol::OsVersion,
}

#[derive(Deserialize)]
struct FileMerchant {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct FileItem {
    id: String,
    title: String,
    kind: ItemKind,
    description: String,
    /// Decimal string in the catalog currency, e.g. "4.99".
    price: String,
    merchant: String,
    poster: String,
    #[serde(default)]
    period_days: Option<u32>,
    #[serde(default)]
    device_product: Option<String>,
}

/// The loaded catalog with an index by item id.
#[derive(Debug, Clone)]
pub struct Store {
    pub currency: Currency,
    pub merchants: Vec<Merchant>,
    pub catalog: Catalog,
    pub products: Vec<Product>,
    by_id: HashMap<ItemId, usize>,
}

impl Store {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading catalog {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in catalog {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: FileCatalog = serde_json::from_str(text)?;
        let currency = Currency::parse(&file.currency)?;
        let mut merchants = Vec::new();
        for m in file.merchants {
            merchants.push(Merchant {
                id: AccountId::parse(&m.id).with_context(|| format!("merchant id {}", m.id))?,
                name: m.name,
            });
        }
        let mut items = Vec::new();
        let mut by_id = HashMap::new();
        for it in file.items {
            let id = ItemId::parse(&it.id).with_context(|| format!("item id {}", it.id))?;
            let merchant = merchants
                .iter()
                .find(|m| m.id.as_str() == it.merchant)
                .with_context(|| format!("item {id}: unknown merchant {}", it.merchant))?
                .clone();
            let price = Money::parse_decimal(&it.price, currency)
                .with_context(|| format!("item {id}: bad price {}", it.price))?;
            anyhow::ensure!(price.minor > 0, "item {id}: price must be positive");
            anyhow::ensure!(
                price.minor <= crate::ledger::MAX_AMOUNT_MINOR,
                "item {id}: price is above the largest amount allowed"
            );
            anyhow::ensure!(
                it.kind != ItemKind::Membership || it.period_days.is_some(),
                "item {id}: a membership needs period_days"
            );
            if let Some(p) = &it.device_product {
                anyhow::ensure!(
                    it.kind == ItemKind::Physical,
                    "item {id}: only physical goods can be devices"
                );
                anyhow::ensure!(
                    file.products.iter().any(|q| &q.id == p),
                    "item {id}: unknown device product {p}"
                );
            }
            anyhow::ensure!(
                by_id.insert(id.clone(), items.len()).is_none(),
                "duplicate item {id}"
            );
            items.push(CatalogItem {
                id,
                title: it.title,
                kind: it.kind,
                description: it.description,
                price,
                merchant,
                poster: it.poster,
                period_days: it.period_days,
                device_product: it.device_product,
            });
        }
        Ok(Self {
            currency,
            merchants,
            catalog: Catalog { items },
            products: file.products,
            by_id,
        })
    }

    pub fn item(&self, id: &ItemId) -> Option<&CatalogItem> {
        self.by_id.get(id).map(|&i| &self.catalog.items[i])
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_loads_with_all_kinds() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/catalog.json");
        let store = Store::load(&path).unwrap();
        for kind in [ItemKind::Video, ItemKind::Membership, ItemKind::Physical] {
            assert!(
                store.catalog.items.iter().any(|i| i.kind == kind),
                "{kind:?}"
            );
        }
        let film = store
            .item(&ItemId::parse("film-night-train").unwrap())
            .unwrap();
        assert_eq!(film.price.minor, 499);
    }

    #[test]
    fn bad_catalogs_are_refused() {
        let bad_price = r#"{"currency":"EUR","merchants":[{"id":"m","name":"M"}],
            "items":[{"id":"a","title":"A","kind":"video","description":"","price":"1.999","merchant":"m","poster":""}]}"#;
        assert!(Store::parse(bad_price).is_err());
        let bad_merchant = r#"{"currency":"EUR","merchants":[],
            "items":[{"id":"a","title":"A","kind":"video","description":"","price":"1","merchant":"m","poster":""}]}"#;
        assert!(Store::parse(bad_merchant).is_err());
    }
}
