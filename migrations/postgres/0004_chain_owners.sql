-- Fencing: a replica that takes a chain's lock bumps the chain's epoch, and a batch's cursor is
-- written only while the epoch is still the one its writer took, so a replica that lost the chain
-- cannot move its cursor any more.
CREATE TABLE chain_owners (
    chain_id    BIGINT PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
