-- What each API key may do, and when it stops working. Keys made before scopes keep what they
-- could do: admin keys manage everything (cluster-admin), the others read and write.
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'read-write';
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
UPDATE api_keys SET scope = 'cluster-admin' WHERE admin;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);
