//! `tagline identity …` and `tagline device …`, and the identity part of `init`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tagline_format::identity::{
    IdentityId, IdentityPayload, email_challenge, normalize_email, rotation,
};
use tagline_format::{Entry, PublicKey, SecretKey};
use tagline_identity::Registry;
use tagline_store::Store;

use crate::{guard, home};

/// Options every appending command shares.
#[derive(Debug, Clone, Copy)]
pub struct AppendOpts<'a> {
    pub force: bool,
    pub root_key: Option<&'a Path>,
}

/// Appends to one of this user's own feeds, with the restore guard.
pub fn append_own(
    home_dir: &Path,
    store: &Store,
    key: &SecretKey,
    items: Vec<(String, Vec<u8>)>,
    force: bool,
) -> Result<Vec<Entry>> {
    before_own_append(home_dir, store, key, force)?;
    let entries = store.append_local(key, items, home::now_ms())?;
    if let Some(last) = entries.last() {
        after_own_append(
            home_dir,
            store,
            key,
            &tagline_format::Head::of(&last.signed),
        )?;
    }
    Ok(entries)
}

/// [`append_own`] for entries that name earlier ones of the same batch:
/// `f` appends them one by one in one transaction (see
/// `Store::append_local_with`), with the same restore guard.
pub fn append_own_with<T>(
    home_dir: &Path,
    store: &Store,
    key: &SecretKey,
    force: bool,
    f: impl FnOnce(&mut tagline_store::LocalAppender<'_, '_>) -> Result<T, tagline_store::StoreError>,
) -> Result<T> {
    before_own_append(home_dir, store, key, force)?;
    let (value, head) = store.append_local_with(key, home::now_ms(), f)?;
    if let Some(head) = head {
        after_own_append(home_dir, store, key, &head)?;
    }
    Ok(value)
}

/// Refuses to append to a forked feed, or to one another copy of this data
/// directory extended (the restore guard).
fn before_own_append(home_dir: &Path, store: &Store, key: &SecretKey, force: bool) -> Result<()> {
    let author = key.public();
    let meta = store.feed(&author)?;
    if let Some(f) = meta.and_then(|m| m.forked_at) {
        bail!(
            "feed {author} is forked at seq {f} (the same key wrote two histories); run `tagline device replace` to revoke this device at the fork point and continue with a new one"
        );
    }
    guard::check(home_dir, &author, meta.map(|m| m.head), force)
}

/// Records the new head: confirmed in the store, and for the guard.
fn after_own_append(
    home_dir: &Path,
    store: &Store,
    key: &SecretKey,
    head: &tagline_format::Head,
) -> Result<()> {
    let author = key.public();
    store.set_confirmed(&author, head.seq)?;
    guard::record(home_dir, &author, head)
}

/// Joins `id` from `device`'s feed and records it as this home's identity.
fn join(
    home_dir: &Path,
    store: &Store,
    device: &SecretKey,
    id: IdentityId,
    force: bool,
) -> Result<()> {
    append_own(
        home_dir,
        store,
        device,
        vec![item(&IdentityPayload::Join { identity: id })],
        force,
    )?;
    home::set_identity(home_dir, &id)
}

fn item(p: &IdentityPayload) -> (String, Vec<u8>) {
    (p.type_name().to_string(), p.encode())
}

/// `tagline init`: a root key with its identity feed, and a first device that
/// joined it. With `no_identity`, only a device key (for a second machine).
pub fn init(home_dir: &Path, no_identity: bool) -> Result<()> {
    let device = home::init(home_dir)?;
    println!("initialised {}", home_dir.display());
    println!("device   {}", device.public());
    if no_identity {
        println!("no identity yet: run `tagline device request IDENTITY` to join one");
        return Ok(());
    }
    let store = home::open_store(home_dir)?;
    let root = SecretKey::from_seed(&home::random32()?);
    home::write_key_file(&home::root_key_path(home_dir), &root)?;
    let id = IdentityId(root.public());
    append_own(
        home_dir,
        &store,
        &root,
        vec![
            item(&IdentityPayload::Genesis),
            item(&IdentityPayload::DeviceAdd {
                device: device.public(),
                from_seq: 1,
            }),
        ],
        false,
    )?;
    join(home_dir, &store, &device, id, false)?;
    println!("identity {id}");
    println!(
        "the root key is in {}; keep a copy offline (`tagline identity export-root FILE`)",
        home::root_key_path(home_dir).display()
    );
    Ok(())
}

/// Resolves every identity from the store's identity entries, through the
/// store's cache when the identity entries have not changed since.
pub fn registry(store: &Store) -> Result<Registry> {
    Ok(registry_at(store)?.1)
}

/// [`registry`], with the identity digest read before it.
fn registry_at(store: &Store) -> Result<([u8; 40], Registry)> {
    Ok(tagline_node::interests::registry_at(store)?)
}

/// The identities that the owners of `keys`, the identities `ids` and the
/// email closure make up (see tagline-review's `consulted_keys`): a part of
/// the registry that answers for them as the whole does, read per identity
/// from the store's cache, so its cost does not grow with the number of
/// identities. Splits the cache first when it is stale.
pub fn registry_for(
    store: &Store,
    keys: &BTreeSet<PublicKey>,
    ids: &BTreeSet<IdentityId>,
) -> Result<Registry> {
    let k: Vec<[u8; 32]> = keys.iter().map(|k| *k.as_bytes()).collect();
    let i: Vec<[u8; 32]> = ids.iter().map(|i| *i.0.as_bytes()).collect();
    if let Some(parts) = store.identity_parts(&k, &i)?
        && let Some(decoded) = parts
            .iter()
            .map(|p| Registry::decode(p))
            .collect::<Option<Vec<_>>>()
    {
        return Ok(Registry::merge(decoded));
    }
    let (digest, full) = registry_at(store)?;
    let parts: Vec<([u8; 32], Vec<u8>)> = full
        .identities
        .keys()
        .map(|id| {
            let one: BTreeSet<IdentityId> = [*id].into();
            (*id.0.as_bytes(), full.subset(&one).encode())
        })
        .collect();
    let owners: Vec<([u8; 32], [u8; 32])> = full
        .owners()
        .map(|(k, id)| (*k.as_bytes(), *id.0.as_bytes()))
        .collect();
    let always: Vec<[u8; 32]> = full
        .email_closure()
        .iter()
        .map(|id| *id.0.as_bytes())
        .collect();
    store.put_identity_parts(&digest, &always, &parts, &owners)?;
    Ok(full)
}

fn own_identity(home_dir: &Path) -> Result<IdentityId> {
    home::identity(home_dir)?.context(
        "this node has no identity yet (run `tagline init`, or `tagline device request IDENTITY`)",
    )
}

/// Loads the root key and checks it is the identity's current root.
fn current_root(
    home_dir: &Path,
    store: &Store,
    opts: AppendOpts<'_>,
) -> Result<(IdentityId, SecretKey)> {
    let id = own_identity(home_dir)?;
    let root = home::load_root(home_dir, opts.root_key)?;
    let reg = registry(store)?;
    let current = reg
        .identities
        .get(&id)
        .and_then(|i| i.current_root().copied());
    if current != Some(root.public()) {
        bail!(
            "the root key given ({}) is not the current root of identity {id} ({}); if the root was rotated elsewhere, import that identity feed first",
            root.public(),
            current.map_or("unknown here".to_string(), |k| k.to_string())
        );
    }
    Ok((id, root))
}

/// Appends identity items signed by the current root key; `make` builds them
/// from the open store and the identity (and may refuse). Returns the identity.
fn append_as_root(
    home_dir: &Path,
    opts: AppendOpts<'_>,
    make: impl FnOnce(&Store, &IdentityId) -> Result<Vec<IdentityPayload>>,
) -> Result<IdentityId> {
    let store = home::open_store(home_dir)?;
    let (id, root) = current_root(home_dir, &store, opts)?;
    let items = make(&store, &id)?.iter().map(item).collect();
    append_own(home_dir, &store, &root, items, opts.force)?;
    Ok(id)
}

pub fn set_name(home_dir: &Path, name: &str, opts: AppendOpts<'_>) -> Result<()> {
    if name.trim().is_empty() || name.len() > tagline_format::identity::MAX_NAME_LEN {
        bail!(
            "a display name must be 1 to {} bytes",
            tagline_format::identity::MAX_NAME_LEN
        );
    }
    append_as_root(home_dir, opts, |_, _| {
        Ok(vec![IdentityPayload::Profile {
            name: name.trim().to_string(),
        }])
    })?;
    println!("name set to {:?}", name.trim());
    Ok(())
}

pub fn add_email(home_dir: &Path, address: &str, opts: AppendOpts<'_>) -> Result<()> {
    let addr =
        normalize_email(address).with_context(|| format!("{address:?} is not an email address"))?;
    let id = append_as_root(home_dir, opts, |_, _| {
        Ok(vec![IdentityPayload::Email {
            address: addr.clone(),
            claimed: true,
        }])
    })?;
    println!("claimed {addr} (unverified)");
    println!(
        "to verify it, send a mail from {addr} to a list bridged by Tagline with this line in the body:"
    );
    println!("  {}", email_challenge(&id, &addr));
    println!(
        "the bridge checks the mail's DKIM signature and records the proof; until then, trailers from {addr} do not count as yours"
    );
    Ok(())
}

/// Attests, from this device's feed, that `identity` controls `address`
/// (method `attestation`). Whether the attestation counts is the project
/// policy's decision (e.g. only the project lead's).
pub fn vouch(home_dir: &Path, identity: &str, address: &str, force: bool) -> Result<()> {
    let id: IdentityId = identity
        .parse()
        .with_context(|| format!("{identity:?} is not an identity id"))?;
    let addr =
        normalize_email(address).with_context(|| format!("{address:?} is not an email address"))?;
    let device = home::load_key(home_dir)?;
    let store = home::open_store(home_dir)?;
    let detail = format!("attested by device {}", device.public());
    let p = IdentityPayload::EmailProof {
        identity: id,
        address: addr.clone(),
        method: "attestation".into(),
        detail,
    };
    append_own(home_dir, &store, &device, vec![item(&p)], force)?;
    println!("attested that {id} controls {addr}");
    Ok(())
}

pub fn remove_email(home_dir: &Path, address: &str, opts: AppendOpts<'_>) -> Result<()> {
    let addr =
        normalize_email(address).with_context(|| format!("{address:?} is not an email address"))?;
    append_as_root(home_dir, opts, |_, _| {
        Ok(vec![IdentityPayload::Email {
            address: addr.clone(),
            claimed: false,
        }])
    })?;
    println!("withdrew {addr}");
    Ok(())
}

pub fn rotate(home_dir: &Path, opts: AppendOpts<'_>) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let (id, old) = current_root(home_dir, &store, opts)?;
    let new = SecretKey::from_seed(&home::random32()?);
    append_own(
        home_dir,
        &store,
        &old,
        vec![item(&rotation(&id, &old.public(), &new))],
        opts.force,
    )?;
    append_own(
        home_dir,
        &store,
        &new,
        vec![item(&IdentityPayload::Continue { identity: id })],
        opts.force,
    )?;
    home::replace_key_file(&home::root_key_path(home_dir), &new)?;
    println!(
        "rotated the root of {id}: {} -> {}",
        old.public(),
        new.public()
    );
    println!(
        "the new root key is in {}; the old one no longer counts",
        home::root_key_path(home_dir).display()
    );
    if opts.root_key.is_some() {
        println!(
            "(the file given with --root-key still holds the old key; replace your offline copy)"
        );
    }
    Ok(())
}

pub fn export_root(home_dir: &Path, file: &Path, opts: AppendOpts<'_>) -> Result<()> {
    let root = home::load_root(home_dir, opts.root_key)?;
    home::write_key_file(file, &root)?;
    println!(
        "root key written to {} (mode 0600); keep it offline",
        file.display()
    );
    Ok(())
}

pub fn forget_root(home_dir: &Path) -> Result<()> {
    let p = home::root_key_path(home_dir);
    if !p.exists() {
        bail!("{} holds no root key", home_dir.display());
    }
    std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    println!(
        "removed {}; commands that need the root key now take --root-key FILE",
        p.display()
    );
    Ok(())
}

pub fn device_add(home_dir: &Path, key: &str, from: u64, opts: AppendOpts<'_>) -> Result<()> {
    let device: PublicKey = key
        .parse()
        .with_context(|| format!("{key:?} is not a device key"))?;
    let id = append_as_root(home_dir, opts, |_, _| {
        Ok(vec![IdentityPayload::DeviceAdd {
            device,
            from_seq: from.max(1),
        }])
    })?;
    println!(
        "authorised device {device} for {id} from its seq {}",
        from.max(1)
    );
    println!(
        "it counts once its own feed has joined {id} (`tagline device request {id}` on that machine)"
    );
    Ok(())
}

pub fn device_revoke(home_dir: &Path, key: &str, after: u64, opts: AppendOpts<'_>) -> Result<()> {
    let device: PublicKey = key
        .parse()
        .with_context(|| format!("{key:?} is not a device key"))?;
    append_as_root(home_dir, opts, |store, id| {
        let reg = registry(store)?;
        if !reg
            .identities
            .get(id)
            .is_some_and(|i| i.devices.iter().any(|d| d.key == device))
        {
            bail!("device {device} is not a device of {id}");
        }
        Ok(vec![IdentityPayload::DeviceRevoke {
            device,
            last_valid_seq: after,
        }])
    })?;
    println!("revoked device {device}: its entries after seq {after} count for nobody");
    Ok(())
}

/// On a machine initialised with `--no-identity`: join `identity` from this
/// device's feed and print what to run on the root's machine.
pub fn device_request(home_dir: &Path, identity: &str, force: bool) -> Result<()> {
    let id: IdentityId = identity
        .parse()
        .with_context(|| format!("{identity:?} is not an identity id"))?;
    if let Some(existing) = home::identity(home_dir)?
        && existing != id
    {
        bail!("this device already belongs to {existing}; use another --home for another identity");
    }
    let device = home::load_key(home_dir)?;
    let store = home::open_store(home_dir)?;
    join(home_dir, &store, &device, id, force)?;
    println!("this device ({}) asked to join {id}", device.public());
    println!("on a machine holding the root key of {id}, run:");
    println!("  tagline device add {}", device.public());
    Ok(())
}

/// Revokes this machine's device key after `after` (default: just before the
/// fork point if the feed forked, else its head) and continues with a new one.
pub fn device_replace(home_dir: &Path, after: Option<u64>, opts: AppendOpts<'_>) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let (id, root) = current_root(home_dir, &store, opts)?;
    let old = home::load_key(home_dir)?;
    let meta = store.feed(&old.public())?;
    let after = after.unwrap_or_else(|| match meta {
        Some(m) => m.forked_at.map_or(m.head.seq, |f| f.saturating_sub(1)),
        None => 0,
    });
    let new = SecretKey::from_seed(&home::random32()?);
    append_own(
        home_dir,
        &store,
        &root,
        vec![
            item(&IdentityPayload::DeviceRevoke {
                device: old.public(),
                last_valid_seq: after,
            }),
            item(&IdentityPayload::DeviceAdd {
                device: new.public(),
                from_seq: 1,
            }),
        ],
        opts.force,
    )?;
    append_own(
        home_dir,
        &store,
        &new,
        vec![item(&IdentityPayload::Join { identity: id })],
        opts.force,
    )?;
    let retired = home_dir
        .join(home::KEYS_DIR)
        .join(format!("device-{}.revoked", old.public().short()));
    home::write_key_file(&retired, &old)?;
    home::replace_key_file(&home::key_path(home_dir), &new)?;
    println!("revoked device {} after its seq {after}", old.public());
    println!("this machine now writes as device {}", new.public());
    Ok(())
}

fn identity_json(
    reg: &Registry,
    id: &IdentityId,
    this_device: Option<&PublicKey>,
) -> serde_json::Value {
    let Some(i) = reg.identities.get(id) else {
        return json!(null);
    };
    let related: Vec<&tagline_identity::Problem> = reg
        .problems
        .iter()
        .filter(|p| {
            i.roots.iter().any(|(k, _)| *k == p.author)
                || i.devices.iter().any(|d| d.key == p.author)
        })
        .collect();
    json!({
        "id": id.to_string(),
        "name": i.name,
        "roots": i.roots.iter().map(|(k, last)| json!({"key": k.to_string(), "last_seq": last})).collect::<Vec<_>>(),
        "emails": i.emails.iter().map(|e| json!({
            "address": e.address,
            "verified": e.verified(),
            "proofs": e.proofs.iter().map(|(by, method, detail)| json!({"by": by.to_string(), "method": method, "detail": detail})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "devices": i.devices.iter().map(|d| json!({
            "key": d.key.to_string(),
            "from_seq": d.from_seq,
            "last_valid_seq": d.last_valid_seq,
            "joined": d.joined,
            "this_device": Some(&d.key) == this_device,
        })).collect::<Vec<_>>(),
        "problems": related.iter().map(|p| json!({"code": p.kind.code(), "feed": p.author.to_string(), "seq": p.seq, "message": p.message})).collect::<Vec<_>>(),
    })
}

/// The JSON view of identity `id` as this node resolves it (see docs/json.md).
fn identity_view(home_dir: &Path, id: &IdentityId) -> Result<serde_json::Value> {
    let store = home::open_store(home_dir)?;
    let reg = registry(&store)?;
    let this_device = home::load_key(home_dir).ok().map(|k| k.public());
    let j = identity_json(&reg, id, this_device.as_ref());
    if j.is_null() {
        bail!("identity {id} is not known here (import its identity feed first)");
    }
    Ok(j)
}

/// A field of a JSON object, or null.
fn field<'a>(v: &'a serde_json::Value, k: &str) -> &'a serde_json::Value {
    v.get(k).unwrap_or(&serde_json::Value::Null)
}

pub fn show(home_dir: &Path, id: Option<&str>, as_json: bool) -> Result<()> {
    let id = match id {
        Some(s) => s
            .parse::<IdentityId>()
            .with_context(|| format!("{s:?} is not an identity id"))?,
        None => own_identity(home_dir)?,
    };
    let j = identity_view(home_dir, &id)?;
    if as_json {
        println!("{j}");
        return Ok(());
    }
    println!("identity {id}");
    println!(
        "name     {}",
        field(&j, "name").as_str().unwrap_or("(not set)")
    );
    for r in field(&j, "roots").as_array().into_iter().flatten() {
        match field(r, "last_seq").as_u64() {
            Some(s) => println!(
                "root     {}  (rotated away after its seq {s})",
                field(r, "key").as_str().unwrap_or("")
            ),
            None => println!(
                "root     {}  (current)",
                field(r, "key").as_str().unwrap_or("")
            ),
        }
    }
    for e in field(&j, "emails").as_array().into_iter().flatten() {
        let status = if field(e, "verified").as_bool() == Some(true) {
            let by: Vec<String> = field(e, "proofs")
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} by {}",
                        field(p, "method").as_str().unwrap_or(""),
                        field(p, "by").as_str().unwrap_or("")
                    )
                })
                .collect();
            format!("verified ({})", by.join(", "))
        } else {
            "claimed, not verified".to_string()
        };
        println!(
            "email    {}  {status}",
            field(e, "address").as_str().unwrap_or("")
        );
    }
    print_devices(&j);
    for p in field(&j, "problems").as_array().into_iter().flatten() {
        println!(
            "problem  {}: {} (feed {}, seq {})",
            field(p, "code").as_str().unwrap_or(""),
            field(p, "message").as_str().unwrap_or(""),
            field(p, "feed").as_str().unwrap_or(""),
            field(p, "seq")
        );
    }
    Ok(())
}

fn print_devices(j: &serde_json::Value) {
    for d in field(j, "devices").as_array().into_iter().flatten() {
        let range = match field(d, "last_valid_seq").as_u64() {
            Some(l) => format!("seq {}..={l} (revoked)", field(d, "from_seq")),
            None => format!("seq {}..", field(d, "from_seq")),
        };
        let mut notes = Vec::new();
        if field(d, "joined").as_bool() != Some(true) {
            notes.push("not joined yet");
        }
        if field(d, "this_device").as_bool() == Some(true) {
            notes.push("this device");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        println!(
            "device   {}  {range}{notes}",
            field(d, "key").as_str().unwrap_or("")
        );
    }
}

pub fn device_list(home_dir: &Path, as_json: bool) -> Result<()> {
    let j = identity_view(home_dir, &own_identity(home_dir)?)?;
    if as_json {
        println!("{}", field(&j, "devices"));
    } else {
        print_devices(&j);
    }
    Ok(())
}
