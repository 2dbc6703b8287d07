//! Devices: adding, revoking and listing this user's devices.

use super::*;

impl Client {
    /// Signs another device into this user (its keys come from `cairn-cli device add`),
    /// then adds it to this user's spaces and hands it their keys (see [`Client::sync`]).
    pub async fn add_device(&mut self, keys: DeviceKeys) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::add_device_payload(&self.handle, &keys));
        self.request(Request::AddDevice { device: keys, signature }).await?;
        self.sync().await?;
        Ok(())
    }

    /// Revokes a device of this user: the server stops serving it at once, and it is
    /// removed from this user's spaces, each with a new key it never receives.
    pub async fn revoke_device(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::revoke_device_payload(&self.handle, &device));
        self.request(Request::RevokeDevice { device, signature }).await?;
        self.sync().await?;
        Ok(())
    }

    pub async fn devices(&mut self, handle: &Handle) -> Result<Vec<DeviceRecord>, ClientError> {
        let Response::Devices { devices, .. } =
            self.request(Request::ListDevices { handle: handle.clone() }).await?
        else {
            return Err(ClientError::Protocol("expected devices".into()));
        };
        Ok(devices)
    }
}
